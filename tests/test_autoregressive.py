"""Autoregressive models: causal layers (no pixel sees itself or what comes after it), the blind spot of
the plain masked stack and its absence in the Gated PixelCNN, exact likelihoods that are real
distributions, the fast sampler drawing exactly what the plain one draws, and training."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from genlib import get_family
from genlib.families.autoregressive import MaskedStack, receptive_field
from genlib.families.autoregressive.model import AutoregressiveModel

MODELS = ("pixelcnn", "pixelrnn")


def _random_model(family: str, core_tiny_model, **overrides):
    """A tiny model with its weights moved off the init, in eval mode."""
    model = core_tiny_model(family, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def _after(row: int, col: int) -> torch.Tensor:
    """(28,28) bool: the pixel (row, col) and every pixel after it in raster order."""
    later = torch.zeros(28, 28, dtype=torch.bool)
    later[row, col:] = True
    later[row + 1:] = True
    return later


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("row, col", [(0, 0), (0, 5), (7, 0), (14, 14), (27, 27), (20, 26)])
def test_no_output_sees_its_own_pixel_or_later_ones(family, row, col, core_tiny_model):
    model = _random_model(family, core_tiny_model)
    field = receptive_field(model.logits, row, col)
    assert not (field & _after(row, col)).any(), (family, row, col)
    if (row, col) != (0, 0):
        assert field.any()  # and it does see something before it


def test_the_gated_pixelcnn_has_no_blind_spot_and_the_masked_stack_has_one(core_tiny_model):
    gated = _random_model("pixelcnn", core_tiny_model, layers=6, kernel=3)
    gated_field = receptive_field(gated.logits, 14, 14)
    masked_field = receptive_field(MaskedStack(6), 14, 14)
    assert not (masked_field & _after(14, 14)).any()
    # every pixel of the rows just above, right of the column, is seen by the gated stack ...
    above_right = torch.zeros(28, 28, dtype=torch.bool)
    above_right[10:14, 15:20] = True
    assert gated_field[above_right].all()
    # ... and some of them are missed by the masked stack: its blind spot
    assert not masked_field[above_right].all()
    assert gated_field.sum() > masked_field.sum()


def test_the_likelihood_sums_to_one_over_the_completions_of_an_image(core_tiny_model):
    """Over all 16 settings of an image's last four pixels, p(x) sums to p(its first 780 pixels):
    the model is a proper distribution, and bits_per_dim is its exact -log2 p(x) / 784."""
    model = _random_model("pixelcnn", core_tiny_model, data="binarized")
    start = torch.bernoulli(torch.full((1, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    images = []
    for bits in itertools.product([0.0, 1.0], repeat=4):
        x = start.clone()
        x[0, 0, 27, 24:] = torch.tensor(bits)  # the last four pixels: nothing comes after them
        images.append(x)
    log_p = -model.bits_per_dim(torch.cat(images)) * 784 * math.log(2)           # (16,)
    logits = model.logits(start)[0, 0].flatten()[:780]
    log_first = -torch.nn.functional.binary_cross_entropy_with_logits(logits, start[0, 0].flatten()[:780],
                                                                       reduction="sum")
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(log_first.item(), abs=1e-3)


def test_the_8bit_head_is_a_softmax_over_the_256_levels(core_tiny_model):
    model = _random_model("pixelcnn", core_tiny_model, data="8-bit")
    x = torch.round(torch.rand(2, 1, 28, 28) * 255) / 255
    logits = model.logits(x)
    assert logits.shape == (2, 256, 28, 28)
    expected = torch.nn.functional.cross_entropy(logits, torch.round(x[:, 0] * 255).long(), reduction="none")
    assert torch.allclose(model.bits_per_dim(x), expected.flatten(1).sum(1) / (784 * math.log(2)), atol=1e-5)


@pytest.mark.parametrize("family, data", [("pixelcnn", "binarized"), ("pixelcnn", "8-bit"), ("pixelrnn", "binarized"),
                                          ("pixelrnn", "8-bit")])
def test_the_fast_sampler_draws_exactly_what_the_plain_one_draws(family, data, core_tiny_model):
    model = _random_model(family, core_tiny_model, data=data)
    rows = []
    fast = model.sample(3, generator=torch.Generator().manual_seed(4), callback=lambda step: rows.append(step.step))
    slow = AutoregressiveModel.sample(model, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(fast, slow) and rows == list(range(28))
    levels = {0.0, 1.0} if data == "binarized" else None
    assert levels is None or set(fast.unique().tolist()) <= levels
    partial = model.sample(3, generator=torch.Generator().manual_seed(4), max_rows=5)  # a preview: 5 rows
    assert partial[:, :, 5:].abs().sum() == 0 and torch.equal(partial[:, :, :5], fast[:, :, :5])


@pytest.mark.parametrize("family, data", [("pixelcnn", "binarized"), ("pixelcnn", "8-bit"), ("pixelrnn", "binarized")])
def test_training_lowers_the_exact_nll(family, data, core_tiny_model, core_slice):
    model = core_tiny_model(family, data=data)
    x = core_slice[0][:32]
    target = torch.bernoulli(x, generator=torch.Generator().manual_seed(0)) if data == "binarized" else x
    before = model.bits_per_dim(target).mean()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(20):
        optimizer.zero_grad()
        model.training_step((x, None), step).loss.backward()
        optimizer.step()
    after = model.eval().bits_per_dim(target).mean()
    assert after < before - 0.05, (family, data, before, after)
    assert model.likelihood == "exact" and model.likelihood_benchmark() == data


def test_the_models_are_registered_with_their_page():
    for family in MODELS:
        cls = get_family(family)
        assert cls.page == "pages/autoregressive.py" and cls.group == "Autoregressive"
