"""The two likelihood benchmarks: discretized decoders that are real distributions over the 256 grey
levels, the one fixed binarization, which benchmark each model answers, p(x) for a conditional VAE,
the scorecard entries, and the two-panel chart with its published reference marks."""
from __future__ import annotations

import math

import pytest
import torch

from genlib.comparison import Comparison
from genlib.config import ConfigError
from genlib.likelihood import (BINARIZED, EIGHT_BIT, LEVELS, PUBLISHED, benchmark_data, binarize,
                               discretized_gaussian_nll, discretized_logistic_nll, to_8bit_grid)
from genlib.report import likelihood_chart
from genlib.scoring import score_model

@pytest.fixture
def core_digits(core_slice) -> torch.Tensor:
    """Training digits (64,1,28,28) on the 8-bit grid."""
    return core_slice[0]


GRID = torch.arange(LEVELS, dtype=torch.float64) / (LEVELS - 1)  # every grey level k/255


def _level_probabilities(nll, low: float = 0.0, high: float = 1.0, **params) -> torch.Tensor:
    """P(level) for each of the 256 levels of one pixel (256,), from a per-image NLL function."""
    x = (low + (high - low) * GRID).view(LEVELS, 1, 1, 1)
    expanded = {k: v.expand_as(x) if torch.is_tensor(v) else v for k, v in params.items()}
    return torch.exp(-nll(x, low=low, high=high, **expanded))


@pytest.mark.parametrize("mean, log_scale", [(0.0, -3.0), (0.5, -1.0), (1.2, -6.0), (0.31, -9.0), (-0.4, 0.5)])
def test_the_discretized_decoders_are_distributions_over_the_256_levels(mean, log_scale):
    m = torch.full((1, 1, 1, 1), mean, dtype=torch.float64)
    s = torch.full((1, 1, 1, 1), log_scale, dtype=torch.float64)
    logistic = _level_probabilities(discretized_logistic_nll, mean=m, log_scale=s)
    gaussian = _level_probabilities(discretized_gaussian_nll, mean=m, log_std=s)
    for probs in (logistic, gaussian):
        assert probs.sum().item() == pytest.approx(1.0, abs=1e-6) and (probs >= 0).all()
    if log_scale <= -3:  # a narrow one puts most mass on the level nearest its mean (clipped to the range)
        nearest = round(min(max(mean, 0.0), 1.0) * 255)
        assert abs(int(logistic.argmax()) - nearest) <= 1 and abs(int(gaussian.argmax()) - nearest) <= 1
    else:  # a wide one spills into the open edge bins
        assert logistic[0] > logistic[1] and logistic[-1] > logistic[-2]
    # the [-1, 1] range (diffusion's) is the same distribution, shifted
    wide = _level_probabilities(discretized_gaussian_nll, low=-1.0, high=1.0, mean=2 * m - 1, log_std=s + math.log(2))
    assert torch.allclose(wide, gaussian, atol=1e-9)


def test_binarize_draws_the_same_bits_every_time():
    images = torch.rand(20, 1, 28, 28)
    a, b = binarize(images), binarize(images.clone())
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, binarize(images, seed=1))
    assert a.mean().item() == pytest.approx(images.mean().item(), abs=0.01)
    assert torch.equal(benchmark_data("binarized", images), a)
    assert torch.equal(benchmark_data("8-bit", images), to_8bit_grid(images))
    with pytest.raises(ValueError, match="unknown likelihood benchmark"):
        benchmark_data("4-bit", images)


def test_each_vae_decoder_answers_the_benchmark_it_is_a_distribution_over(core_tiny_model):
    assert core_tiny_model("vae").likelihood_benchmark() == BINARIZED.key
    assert "grey levels" in core_tiny_model("vae").likelihood_note()
    assert core_tiny_model("vae", binarize=True).likelihood_note() == ""
    assert core_tiny_model("vae", loss="mse").likelihood_benchmark() == EIGHT_BIT.key
    assert core_tiny_model("vae", loss="logistic").likelihood_benchmark() == EIGHT_BIT.key
    assert core_tiny_model("ae").likelihood_benchmark() == ""  # a plain AE has no likelihood
    with pytest.raises(ConfigError, match="binarize needs the bce loss"):
        core_tiny_model("vae", loss="logistic", binarize=True)


def test_a_logistic_vae_trains_and_bounds_the_8bit_digits(core_tiny_model, core_digits):
    model = core_tiny_model("vae", loss="logistic")
    x = to_8bit_grid(core_digits[:16])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = model.bits_per_dim(x, generator=torch.Generator().manual_seed(0)).mean()
    for step in range(30):
        optimizer.zero_grad()
        model.training_step((x, torch.zeros(16, dtype=torch.long)), step).loss.backward()
        optimizer.step()
    after = model.bits_per_dim(x, generator=torch.Generator().manual_seed(0)).mean()
    assert torch.isfinite(after) and 0 < after < before
    assert model.decode(torch.zeros(2, model.config.latent_dim)).shape == (2, 1, 28, 28)
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.min() >= 0 and images.max() <= 1


def test_a_binarized_vae_trains_on_bits(core_tiny_model, core_digits):
    model = core_tiny_model("vae", binarize=True)
    seen = []
    original = model._elbo_terms
    model._elbo_terms = lambda x, *a, **k: (seen.append(x), original(x, *a, **k))[1]
    model.training_step((core_digits[:8], torch.zeros(8, dtype=torch.long)), 0)
    assert set(seen[0].unique().tolist()) <= {0.0, 1.0}


def test_a_conditional_vae_without_labels_bounds_p_of_x_over_the_classes(core_tiny_model, core_digits):
    model = core_tiny_model("cvae").eval()
    x = binarize(core_digits[:6])
    dims = x[0].numel()
    marginal = model.bits_per_dim(x, None, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)  # the same noise draws, class by class
    per_class = torch.stack([model.bits_per_dim(x, torch.full((6,), c), generator=gen) for c in range(10)])
    expected = -((-per_class * dims * math.log(2)).logsumexp(0) - math.log(10)) / (dims * math.log(2))
    assert torch.allclose(marginal, expected, atol=1e-5)
    # the mixture is at least as likely as its best class, less the log 10 of choosing it
    assert (marginal <= per_class.min(0).values + math.log2(10) / dims + 1e-6).all()


def test_scorecards_put_each_value_on_its_own_benchmark(core_tiny_model, core_evaluator):
    bernoulli = score_model(core_tiny_model("vae"), "bern", core_evaluator.ref, num_samples=20)
    logistic = score_model(core_tiny_model("vae", loss="logistic"), "logi", core_evaluator.ref, num_samples=20)
    assert bernoulli.metrics["likelihood_benchmark"] == "binarized" and bernoulli.metrics["binarized_nats"] > 0
    assert "bits_per_dim" in bernoulli.missing and "binarized" in bernoulli.missing["bits_per_dim"]
    assert "grey levels" in bernoulli.metrics["likelihood_note"]
    assert logistic.metrics["likelihood_benchmark"] == "8-bit" and logistic.metrics["bits_per_dim"] > 0
    assert "binarized_nats" in logistic.missing
    for card in (bernoulli, logistic):
        assert card.metrics["likelihood"] == "bound" and 0 < card.metrics["likelihood_stderr"] < math.inf
    # nats per image and bits/dim are the same number in two units: 784 ln 2 apart per bit/dim
    assert bernoulli.metrics["binarized_nats"] > 784 * math.log(2) * 0.01

    chart = likelihood_chart(Comparison(0, [bernoulli, logistic], []))
    bars = [t for t in chart.data if t.type == "bar"]
    assert {(t.xaxis, tuple(t.x)) for t in bars} == {("x", ("logi",)), ("x2", ("bern",))}
    assert all(t.error_y.array[0] > 0 for t in bars)
    marks = {(t.xaxis, y) for t in chart.data if t.type == "scatter" for y in t.y}
    assert marks == {("x" if p.benchmark == "8-bit" else "x2", p.value) for p in PUBLISHED}
    titles = [a.text for a in chart.layout.annotations]
    assert "8-bit digits: bits/dim ↓" in titles and "Binarized digits: nats ↓" in titles


def test_the_chart_says_when_a_panel_is_empty():
    chart = likelihood_chart(Comparison(0, [], []))
    assert sum("no model here has this likelihood" in a.text for a in chart.layout.annotations) == 2
    assert [t.type for t in chart.data] == ["scatter", "scatter"]  # the published marks still show


def test_the_published_references_are_the_papers_figures():
    by_model = {p.model: (p.benchmark, p.value, p.kind) for p in PUBLISHED}
    assert by_model["RealNVP"] == ("8-bit", 1.06, "exact") and by_model["Glow"] == ("8-bit", 1.05, "exact")
    assert by_model["FFJORD"] == ("8-bit", 0.99, "exact") and by_model["PixelCNN"] == ("binarized", 81.30, "exact")
    assert by_model["PixelRNN (Diagonal BiLSTM, 7 layers)"] == ("binarized", 79.20, "exact")
    assert by_model["RBM, 500 hidden, CD-25"] == ("binarized", 86.34, "estimate")
