"""The Vision Transformer: rollout against a hand computation, CLS maps, training, save/load, a tiny
Hugging Face ViT saved here, bad inputs in words, the CLI and the page. Real models throughout; no
network (HF_HUB_OFFLINE)."""
from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from genlib.checkpoints import CheckpointError
from genlib.config import ConfigError
from genlib.families.transformers import vit
from genlib.families.transformers.vit import (ViTConfig, ViTTrainConfig, VisionTransformer, augment, load_vit, save_vit,
                                              train_vit)
from genlib.families.transformers.vit_explain import (Explained, ViTSource, attention_rollout, cls_maps,
                                                      load_vit_source, overlay_map, rollout_matrix)
from genlib.families.transformers.vit_cli import VIT_COMMANDS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
TINY = ViTConfig(patch_size=7, dim=16, depth=2, heads=2, mlp_ratio=2)


# -- rollout and CLS maps on hand-built attention ------------------------------------------------------------
def _layers() -> list[torch.Tensor]:
    """Two layers, two heads, three tokens (CLS, patch 1, patch 2); each row sums to 1."""
    eye = torch.eye(3)
    layer1 = torch.stack([torch.tensor([[0., 1, 0], [0, 1, 0], [0, 0, 1]])] * 2)       # CLS looks at patch 1
    layer2 = torch.stack([torch.tensor([[0., 0, 1], [0, 0, 1], [0, 0, 1]]),               # head a: all at patch 2
                          torch.tensor([[1., 0, 0], [0, 0, 1], eye[2].tolist()])])         # head b: CLS at itself
    return [layer1, layer2]


def test_rollout_matches_a_hand_computation():
    # Layer 1, heads averaged, + I, rows renormalised: Â1 = [[1/2,1/2,0],[0,1,0],[0,0,1]].
    # Layer 2 head mean: [[1/2,0,1/2],[0,0,1],[0,0,1]]; Â2 = [[3/4,0,1/4],[0,1/2,1/2],[0,0,1]].
    # R = Â2 @ Â1 = [[3/8,3/8,1/4],[0,1/2,1/2],[0,0,1]] (the other order, Â1 @ Â2, gives row 0 [3/8,1/4,3/8]).
    expected = torch.tensor([[3 / 8, 3 / 8, 1 / 4], [0, 1 / 2, 1 / 2], [0, 0, 1]])
    assert torch.allclose(rollout_matrix(_layers()), expected, atol=1e-6)
    # The CLS row over the two patches, scaled to a maximum of 1: [3/8, 1/4] / (3/8).
    assert torch.allclose(attention_rollout(_layers(), (1, 2)), torch.tensor([[1.0, 2 / 3]]), atol=1e-6)


def test_rollout_of_one_layer_is_its_renormalised_head_mean_plus_identity():
    a = torch.softmax(torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(0)), -1)
    expected = (a.mean(0) + torch.eye(5)) / 2   # rows of the mean already sum to 1, so + I doubles them
    assert torch.allclose(rollout_matrix([a]), expected, atol=1e-6)
    assert torch.allclose(rollout_matrix([a, a, a]).sum(-1), torch.ones(5), atol=1e-5)


def test_cls_maps_take_row_zero_over_the_patches():
    maps = cls_maps(_layers(), 1, (1, 2))
    assert maps.shape == (2, 1, 2)
    assert maps[0].tolist() == [[0.0, 1.0]] and maps[1].tolist() == [[0.0, 0.0]]


# -- the lab's ViT ----------------------------------------------------------------------------------------------
def test_a_tiny_vit_gives_per_head_maps_and_a_rollout(core_mnist):
    torch.manual_seed(0)
    model = VisionTransformer(TINY).eval()
    source = ViTSource("tiny", model, {})
    e = source.explain(core_mnist.test_images[0])
    assert isinstance(e, Explained) and e.grid == (4, 4) and e.image.shape == (28, 28)
    assert len(e.attentions) == 2 and all(a.shape == (2, 17, 17) for a in e.attentions)
    assert torch.allclose(e.attentions[0].sum(-1), torch.ones(2, 17), atol=1e-5)
    maps = e.cls_maps(1)
    assert maps.shape == (2, 4, 4)
    assert torch.equal(maps, e.attentions[1][:, 0, 1:].reshape(2, 4, 4))
    roll = e.rollout()
    assert roll.shape == (4, 4) and abs(roll.max().item() - 1) < 1e-6 and roll.min() >= 0
    assert abs(e.probs.sum().item() - 1) < 1e-5 and e.prediction in [str(i) for i in range(10)]
    # the logits from forward and from forward_attentions agree
    x = core_mnist.test_images[:3]
    assert torch.allclose(model(x), model.forward_attentions(x)[0])
    assert overlay_map(maps[0], (28, 28)).shape == (28, 28)


def test_a_tiny_vit_trains_two_steps_with_a_finite_loss(core_slice):
    images, labels = core_slice
    before = VisionTransformer(TINY)
    losses = []
    model = train_vit(images, labels, TINY, ViTTrainConfig(epochs=1, batch_size=16, device="cpu"), max_steps=2,
                      on_epoch=lambda epoch, loss: losses.append(loss))
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert not model.training
    torch.manual_seed(0)
    fresh = VisionTransformer(TINY).state_dict()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, fresh[k])]
    assert changed, "two optimiser steps changed no weight"
    assert set(before.state_dict()) == set(model.state_dict())


def test_augment_keeps_shape_and_is_the_identity_with_nothing_to_do(core_slice):
    images = core_slice[0][:8]
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(augment(images, gen, 0, 0, 0), images, atol=1e-5)
    moved = augment(images, gen, 2, 15, 0.1)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    assert moved.min() >= 0 and moved.max() <= 1 + 1e-6


def test_config_refuses_shapes_that_do_not_fit():
    with pytest.raises(ConfigError, match="does not divide image_size"):
        ViTConfig(patch_size=5)
    with pytest.raises(ConfigError, match="does not divide dim"):
        ViTConfig(dim=30, heads=4)
    with pytest.raises(ConfigError, match="unknown setting"):
        ViTConfig.from_dict({"layers": 3})


def test_save_and_load_give_identical_logits(tmp_path, core_mnist):
    torch.manual_seed(1)
    model = VisionTransformer(TINY).eval()
    folder = save_vit(model, tmp_path / "vit", {"test_accuracy": 0.5}, ViTTrainConfig(epochs=2))
    meta = json.loads((folder / "config.json").read_text())
    assert meta["kind"] == "classifier" and meta["family"] == "vit" and meta["train"]["epochs"] == 2
    assert (folder / "README.md").read_text().startswith("# Vision Transformer")
    loaded, metrics = load_vit(folder)
    x = core_mnist.test_images[:5]
    assert torch.equal(model(x), loaded(x)) and metrics["test_accuracy"] == 0.5
    source = load_vit_source(str(folder))
    assert not source.hf and source.layers == 2 and source.heads == 2
    assert torch.equal(source.explain(x[0]).probs, model(x[:1])[0].softmax(-1))


# -- a tiny Hugging Face ViT, saved here ---------------------------------------------------------------------
def _hf_vit(folder: Path, channels: int = 3, processor: bool = True) -> Path:
    from transformers import ViTConfig as HFConfig, ViTForImageClassification, ViTImageProcessorPil

    torch.manual_seed(0)
    cfg = HFConfig(image_size=32, patch_size=8, num_channels=channels, hidden_size=32, num_hidden_layers=3,
                   num_attention_heads=4, intermediate_size=64, num_labels=10,
                   id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)})
    ViTForImageClassification(cfg).eval().save_pretrained(folder)
    if processor:
        ViTImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * channels,
                             image_std=[0.5] * channels).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("processor", [True, False])
def test_a_tiny_hugging_face_vit_loads_and_gives_maps(tmp_path, core_mnist, processor):
    source = load_vit_source(str(_hf_vit(tmp_path / "hf", processor=processor)))
    assert source.hf and (source.processor is not None) == processor
    assert (source.layers, source.heads, source.grid, source.size) == (3, 4, (4, 4), (32, 32))
    e = source.explain(core_mnist.test_images[3])          # a grey 28x28 digit into a colour 32x32 model
    assert e.image.shape == (32, 32, 3)
    assert len(e.attentions) == 3 and e.attentions[0].shape == (4, 17, 17)
    assert e.cls_maps(2).shape == (4, 4, 4) and e.rollout().shape == (4, 4)
    # the same pixels as the model sees them give the same probabilities as calling it directly
    pixels = (torch.from_numpy(e.image).permute(2, 0, 1)[None] - 0.5) / 0.5
    direct = source.model(pixel_values=pixels).logits[0].softmax(-1)
    assert torch.allclose(e.probs, direct, atol=1e-2 if processor else 1e-5)  # the processor rounds to uint8


def test_bad_sources_fail_in_words(tmp_path, core_mnist):
    def refused(source) -> str:
        with pytest.raises(CheckpointError) as info:
            load_vit_source(source)
        message = str(info.value)
        assert "Error" not in message and "Traceback" not in message, message
        return message

    assert "no checkpoint called" in refused(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json" in refused(str(empty))
    other = tmp_path / "vae"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"family": "vae", "model": {}}))
    assert "not a Vision Transformer" in refused(str(other))
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert "not a Hugging Face ViT" in refused(str(gpt2))
    pickled = _hf_vit(tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    assert "never unpickles" in refused(str(pickled))
    broken = _hf_vit(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert "could not be loaded" in refused(str(broken))
    assert "Hugging Face Hub" in refused("nobody-here/no-such-vit")   # offline, or the hub off here
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ViTSource("tiny", VisionTransformer(TINY), {}).explain(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        cls_maps(_layers(), 5, (1, 2))
    with pytest.raises(ValueError, match="no attention layers"):
        rollout_matrix([])


# -- the CLI -------------------------------------------------------------------------------------------------
def _command(name: str):
    return next(c for c in VIT_COMMANDS if c.name == name)


def _run(name: str, argv: list[str]) -> int:
    command = _command(name)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def test_cli_trains_and_evaluates(tmp_path, capsys):
    out = tmp_path / "vit-cli"
    flags = ["--out", str(out), "--epochs", "1", "--patch-size", "7", "--dim", "16", "--depth", "1", "--heads", "2",
             "--batch-size", "256", "--device", "cpu"]
    assert _run("train-vit", flags) == 0
    assert {"config.json", "model.safetensors", "metrics.json", "README.md", "samples.png"} <= \
        {p.name for p in out.iterdir()}
    stored = json.loads((out / "metrics.json").read_text())
    assert 0 <= stored["test_accuracy"] <= 1 and stored["test_images"] == 1000 and stored["epochs"] == 1
    assert Image.open(out / "samples.png").size[0] > 28 * 8
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        dtype = weights.get_tensor("head.weight").dtype
    assert dtype == (torch.float16 if stored["weights"] == "float16" else torch.float32)
    capsys.readouterr()
    assert _run("eval-vit", [str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test_accuracy"] == pytest.approx(stored["test_accuracy"])
    assert printed["test_images"] == 1000
    with pytest.raises(ConfigError, match="does not divide"):
        _run("train-vit", ["--out", str(tmp_path / "bad"), "--patch-size", "5"])


# -- the page --------------------------------------------------------------------------------------------------
@pytest.fixture
def page_env(tmp_path, monkeypatch):
    """A checkpoints folder with a tiny ViT as vit-digits, and a tiny Hugging Face ViT folder."""
    torch.manual_seed(0)
    save_vit(VisionTransformer(TINY).eval(), tmp_path / "ckpt" / "vit-digits",
             {"test_accuracy": 0.123, "test_images": 1000})
    monkeypatch.setenv("GENLIB_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("GENLIB_RUNS_DIR", str(tmp_path / "runs"))
    return {"hf": _hf_vit(tmp_path / "hf"), "root": tmp_path}


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_page_shows_prediction_heads_and_rollout(page_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "vit.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.metric[0].label == "Prediction"
    assert any("12.30%" in c.value for c in at.caption)          # the test accuracy from metrics.json
    assert len(at.get("plotly_chart")) == 2                       # rollout + the per-head grid
    heads = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert sum(t["type"] == "heatmap" for t in heads["data"]) == 2 * 2   # image + map for each of 2 heads
    at.select_slider(key="vit_layer").set_value(1).run()
    assert not at.exception

    at.number_input(key="vit_digit").set_value(7).run()
    assert any("True label" in m.value for m in at.caption)

    at.radio(key="vit_model_kind").set_value("Another ViT: a folder or a Hugging Face hub id").run()
    assert any("Type a folder" in i.value for i in at.info)
    at.text_input(key="vit_source").set_value(str(page_env["hf"])).run()
    assert not at.exception and not at.error
    heads = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert sum(t["type"] == "heatmap" for t in heads["data"]) == 4  # 4 heads, colour image underneath each

    at.text_input(key="vit_source").set_value(str(page_env["root"] / "nothing")).run()
    assert not at.exception and "no checkpoint called" in at.error[0].value


def test_page_says_what_is_wrong_with_an_upload_and_reads_a_good_one(page_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "vit.py"), default_timeout=120)
    at.run()
    at.radio(key="vit_image_kind").set_value("Upload an image").run()
    assert not at.exception and any("Upload an image" in i.value for i in at.info)
    at.file_uploader(key="vit_upload").upload("digit.png", b"definitely not an image", "image/png").run()
    assert not at.exception and "not a readable image" in at.error[0].value
    ink = np.full((56, 56), 255, np.uint8)
    ink[10:46, 24:32] = 0                      # a dark "1" on white paper: inverted to light on dark
    at.file_uploader(key="vit_upload").upload("digit.png", _png(ink), "image/png").run()
    assert not at.exception and not at.error
    assert at.metric[0].label == "Prediction" and len(at.get("plotly_chart")) == 2


def test_the_shipped_vit_reaches_97_percent_on_the_test_digits(core_mnist):
    folder = ROOT / "checkpoints" / "vit-digits"   # shipped: its absence is a failure, not a skip
    assert folder.is_dir(), "checkpoints/vit-digits is missing: python -m genlib train-vit --out checkpoints/vit-digits"
    model, metrics = load_vit(folder)
    measured = vit.accuracy(model, core_mnist.test_images, core_mnist.test_labels)
    assert measured >= 0.97 and measured == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert json.loads((folder / "config.json").read_text())["kind"] == "classifier"
