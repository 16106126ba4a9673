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
    assert m["binarized_nats"] > 0 and m["likelihood"] == "bound" and m["likelihood_benchmark"] == "binarized"
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


# -- KID, precision/recall, coverage, nearest neighbours -------------------------------------------------------
@pytest.fixture(scope="module")
def core_train_features(core_mnist, core_classifier):
    from genlib.metrics import classifier_features

    return classifier_features(core_classifier, core_mnist.train_images)


def _hand_kid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased MMD² with the cubic kernel k(x,y) = (x·y/d + 1)^3, written out term by term."""
    d = a.shape[1]
    k = lambda x, y: (x.double() @ y.double().T / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return ((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
            - 2 * kxy.mean()).item()


def test_kid_matches_the_unbiased_mmd_formula(core_train_features):
    from genlib.metrics import kid_from_features

    a, b = core_train_features[:300], core_train_features[300:600] + 0.3
    mean, std = kid_from_features(a, b, subsets=3, subset_size=300)  # a subset of all 300 = the whole set
    assert mean == pytest.approx(_hand_kid(a, b), rel=1e-3) and std == pytest.approx(0.0, abs=1e-3 * abs(mean))


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_noise(core_mnist, core_classifier,
                                                                            core_train_features):
    from genlib.metrics import classifier_features, kid_from_features

    halves = core_train_features[:2000], core_train_features[2000:]
    same_mean, same_std = kid_from_features(*halves, subsets=20, subset_size=1000)
    # unbiased: two samples of one distribution score 0 up to noise (the biased FD would not)
    assert abs(same_mean) < 3 * same_std + 1e-6
    test = core_mnist.test_images
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(test.shape, generator=gen)
    kids = [kid_from_features(core_train_features,
                              classifier_features(core_classifier, (test + s * noise).clamp(0, 1)))[0]
            for s in (0.0, 0.2, 0.5)]
    assert kids[0] < kids[1] < kids[2] and kids[1] > 10 * (abs(same_mean) + same_std)


def test_precision_recall_identical_sets_and_a_dropped_class(core_mnist, core_train_features, core_classifier):
    from genlib.metrics import classifier_features, precision_recall

    assert precision_recall(core_train_features, core_train_features) == (1.0, 1.0)
    test_features = classifier_features(core_classifier, core_mnist.test_images)
    keep = core_mnist.test_labels != 3
    p_all, r_all = precision_recall(core_train_features, test_features)
    p_drop, r_drop = precision_recall(core_train_features, test_features[keep])
    assert r_drop < r_all - 0.03          # a whole digit is missing from the samples: recall falls
    assert p_drop > p_all - 0.02          # but what is there is still realistic
    noise = classifier_features(core_classifier, torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert precision_recall(core_train_features, noise)[0] < 0.05


def test_class_coverage_entropy():
    from genlib.metrics import class_coverage

    uniform = class_coverage(torch.arange(100) % 10, 10)
    assert uniform.counts == [10] * 10 and uniform.entropy_bits == pytest.approx(math.log2(10))
    collapsed = class_coverage(torch.full((50,), 7), 10)
    assert collapsed.counts[7] == 50 and collapsed.entropy_bits == 0.0
    half = class_coverage(torch.tensor([1, 1, 2, 2]), 10)
    assert half.entropy_bits == pytest.approx(1.0) and half.max_entropy_bits == pytest.approx(math.log2(10))


def test_nearest_neighbours_finds_copies(core_mnist):
    from genlib.metrics import nearest_neighbours

    train = core_mnist.train_images[:500]
    queries = torch.stack([train[17], train[230], (train[5] + 0.1).clamp(0, 1)])
    dist, idx = nearest_neighbours(queries, train, k=2)
    assert idx[:, 0].tolist() == [17, 230, 5] and dist[0, 0] < 1e-3 and dist[1, 0] < 1e-3
    assert (dist[:, 1] >= dist[:, 0]).all() and dist[2, 0] > 0.5


def test_kid_is_the_same_while_another_thread_uses_the_global_rng():
    import threading

    from genlib.metrics import kid_from_features

    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(1500, 32, generator=gen), torch.randn(1200, 32, generator=gen) + 0.2
    alone = kid_from_features(real, fake, subset_size=500, seed=4)
    stop = threading.Event()

    def hammer() -> None:  # a training job in another thread draws from the global RNG all the time
        while not stop.is_set():
            torch.manual_seed(123)
            torch.randn(64)

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    try:
        busy = [kid_from_features(real, fake, subset_size=500, seed=4) for _ in range(5)]
    finally:
        stop.set()
        worker.join()
    assert all(value == alone for value in busy)
