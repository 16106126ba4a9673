"""genlib.metrics, genlib.evaluator, genlib.evaluation and genlib.images."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genlib import images
from genlib.checkpoints import CheckpointError, save_folder, shipped_dir
from genlib.evaluation import evaluate
from genlib.evaluator import load_classifier
from genlib.metrics import class_accuracy, frechet_distance, mean_squared_error, nats_to_bits_per_dim


@pytest.fixture(scope="module")
def core_real(core_mnist):
    return core_mnist.test_images[:200]


def test_frechet_distance_of_a_set_with_itself_is_zero(core_real, core_classifier):
    assert abs(frechet_distance(core_real, core_real, core_classifier)) < 1e-2


def test_frechet_distance_grows_with_noise(core_real, core_classifier):
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(core_real.shape, generator=gen)
    fds = [frechet_distance(core_real, (core_real + s * noise).clamp(0, 1), core_classifier)
           for s in (0.0, 0.1, 0.3, 0.6)]
    assert abs(fds[0]) < 1e-2
    assert all(a < b for a, b in zip(fds, fds[1:])), fds


def test_frechet_distance_is_symmetric_and_separates_digits_from_noise(core_mnist, core_real, core_classifier):
    other = core_mnist.train_images[:200]
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    d_ab = frechet_distance(core_real, other, core_classifier)
    d_ba = frechet_distance(other, core_real, core_classifier)
    assert math.isclose(d_ab, d_ba, rel_tol=1e-3, abs_tol=1e-3)
    assert d_ab < frechet_distance(core_real, noise, core_classifier) / 10


def test_nats_to_bits_per_dim():
    assert nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert nats_to_bits_per_dim(0.0, 784) == 0.0
    t = nats_to_bits_per_dim(torch.tensor([2 * math.log(2), 4 * math.log(2)]), 2)
    assert torch.allclose(t, torch.tensor([1.0, 2.0]))


def test_mean_squared_error_per_image():
    a = torch.zeros(3, 1, 2, 2)
    b = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 0.5, 1.0)])
    assert torch.allclose(mean_squared_error(a, b), torch.tensor([0.0, 0.25, 1.0]))


def test_classifier_accuracy_on_the_test_split(core_mnist, core_classifier):
    acc = class_accuracy(core_classifier, core_mnist.test_images, core_mnist.test_labels)
    assert acc >= 0.95
    shuffled = core_mnist.test_labels[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    assert class_accuracy(core_classifier, core_mnist.test_images, shuffled) < 0.3
    shipped = json.loads((shipped_dir() / "digit-classifier" / "metrics.json").read_text())
    assert acc == pytest.approx(shipped["test_accuracy"], abs=1e-6)  # the shipped card tells the truth


def test_classifier_features_and_predict(core_mnist, core_classifier):
    x = core_mnist.test_images[:10]
    assert core_classifier.features(x).shape == (10, core_classifier.num_features)
    assert core_classifier.predict(x, batch=3).shape == (10,)


def test_load_classifier_refuses_other_checkpoints(tmp_path, core_tiny_model):
    model = core_tiny_model("vae")
    save_folder(tmp_path / "v", model, {"family": "vae", "model": model.config.to_dict()})
    with pytest.raises(CheckpointError, match="not the digit classifier"):
        load_classifier(tmp_path / "v")
    with pytest.raises(CheckpointError, match="train-evaluator"):
        load_classifier(tmp_path / "missing")


def test_evaluate_a_conditional_model(core_tiny_model, core_classifier):
    model = core_tiny_model("cvae")
    m = evaluate(model, classifier=core_classifier, num_samples=100, seed=1)
    assert m["num_samples"] == 100 and m["seed"] == 1 and m["evaluator"] == "digit-classifier"
    assert m["frechet_distance"] > 0 and math.isfinite(m["frechet_distance"])
    assert 0.0 <= m["class_accuracy"] <= 1.0
    assert m["nelbo_bits_per_dim"] > 0 and m["likelihood_is_bound"] is True
    assert 0 < m["test_recon_mse"] < 1
    assert m["num_parameters"] == model.num_parameters()
    json.dumps(m)  # goes into metrics.json as it is


# -- images ----------------------------------------------------------------------------------------------
def test_to_grid_grey_shape_padding_and_values():
    x = torch.zeros(10, 1, 28, 28)
    x[3] = 1.0
    g = images.to_grid(x, nrow=4, pad=2)
    assert g.dtype == np.uint8 and g.shape == (3 * 30 + 2, 4 * 30 + 2)
    assert g[0, 0] == 255  # padding is white
    assert g[2, 2] == 0  # image 0 is black
    assert g[2 + 14, 2 + 3 * 30 + 14] == 255  # image 3 is white
    assert g[-3, -3] == 255  # the empty cells of the last row are padding


def test_to_grid_rgb_clamps_and_small_batches():
    x = torch.full((2, 3, 8, 8), 2.0)
    x[1] = -1.0
    g = images.to_grid(x, nrow=8, pad=1)
    assert g.shape == (1 * 9 + 1, 2 * 9 + 1, 3)  # nrow is capped at the number of images
    assert g[1, 1].tolist() == [255, 255, 255] and g[1, 10].tolist() == [0, 0, 0]


def test_png_helpers_write_metadata_and_scale():
    arr = images.to_grid(torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)), nrow=3)
    png = images.to_png(arr, {"family": "vae", "seed": 7}, scale=3)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (arr.shape[1] * 3, arr.shape[0] * 3)
    assert img.text == {"family": "vae", "seed": "7"}
    assert np.array_equal(np.asarray(img)[::3, ::3], arr)  # nearest-neighbour: exact pixels
    grid = Image.open(io.BytesIO(images.grid_png(torch.zeros(4, 1, 28, 28), nrow=2, metadata={"k": "v"})))
    assert grid.size == (2 * (2 * 30 + 2), 2 * (2 * 30 + 2)) and grid.text == {"k": "v"}
