"""The two likelihood benchmarks the lab reports, so that no chart puts unlike quantities side by side.

- ``EIGHT_BIT``: -log2 p(x) / 784 of the 8-bit test digits, x in {0, 1/255, ..., 1}^784, in bits/dim.
  A continuous model must integrate its density over each pixel's bin (a discretized decoder) or use
  uniform dequantization and count the Jacobian of any transform it applies (a logit, say).
- ``BINARIZED``: -ln p(x) of the binarized test digits, x in {0, 1}^784, in nats per image: the classic
  benchmark. The test digits are binarized once (``binarize``, each pixel on with probability its grey
  level) with a fixed seed, so every model is scored on the same bits.

A model says which one its ``bits_per_dim`` answers (``GenerativeModel.likelihood_benchmark``) and what
kind of value it is: exact, a bound (ELBO, VLB) or an estimate (AIS). ``PUBLISHED`` holds the
full-MNIST figures the chart draws as reference marks; every one is from a model trained on 60,000
digits, not the lab's 4,000.

This module also holds the discretized decoders (Gaussian and logistic integrated over 8-bit bins)
that any family may use to put a continuous output on the 8-bit benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LOG2 = math.log(2.0)
BINARIZE_SEED = 0      # the one fixed draw of the binarized test digits
LEVELS = 256           # grey levels of an 8-bit pixel


@dataclass(frozen=True)
class LikelihoodBenchmark:
    """One panel of the likelihood chart: the data it scores, its unit and its scorecard key."""

    key: str          # "8-bit" | "binarized"
    title: str
    unit: str         # the unit values are reported in
    metric: str       # the scorecard entry that holds a model's value
    data: str         # what the test data is, for people

    def from_bits_per_dim(self, bpd: Tensor, dims: int) -> Tensor:
        """Per-image values (N,) in this benchmark's unit from bits/dim (N,)."""
        return bpd if self.unit == "bits/dim" else bpd * dims * LOG2


EIGHT_BIT = LikelihoodBenchmark("8-bit", "8-bit digits", "bits/dim", "bits_per_dim",
                                "the 1,000 test digits on their 256 grey levels")
BINARIZED = LikelihoodBenchmark("binarized", "Binarized digits", "nats", "binarized_nats",
                                f"the 1,000 test digits binarized once, with seed {BINARIZE_SEED}")
BENCHMARKS = {b.key: b for b in (EIGHT_BIT, BINARIZED)}


@dataclass(frozen=True)
class PublishedValue:
    """A published test negative log-likelihood on full MNIST, drawn on the chart as a reference mark."""

    benchmark: str    # a BENCHMARKS key
    model: str
    value: float      # in the benchmark's unit (a negative log-likelihood: lower is better)
    kind: str         # exact | bound | estimate, as the paper reports it
    source: str


# Checked against the papers' tables. All were trained on the 60,000 MNIST training digits.
PUBLISHED: tuple[PublishedValue, ...] = (
    PublishedValue("8-bit", "RealNVP", 1.06, "exact", "Grathwohl et al., FFJORD, ICLR 2019, Table 2"),
    PublishedValue("8-bit", "Glow", 1.05, "exact", "Grathwohl et al., FFJORD, ICLR 2019, Table 2"),
    PublishedValue("8-bit", "FFJORD", 0.99, "exact", "Grathwohl et al., FFJORD, ICLR 2019, Table 2"),
    PublishedValue("binarized", "PixelCNN", 81.30, "exact", "van den Oord et al., Pixel RNN, ICML 2016, Table 4"),
    PublishedValue("binarized", "PixelRNN (Diagonal BiLSTM, 7 layers)", 79.20, "exact",
                   "van den Oord et al., Pixel RNN, ICML 2016, Table 4"),
    PublishedValue("binarized", "RBM, 500 hidden, CD-25", 86.34, "estimate",
                   "Salakhutdinov and Murray, ICML 2008, Table 1 (AIS)"),
)
PUBLISHED_NOTE = "published, trained on 60,000 digits"


def binarize(images: Tensor, seed: int = BINARIZE_SEED) -> Tensor:
    """Images (N,...) in [0,1] to {0,1}: each pixel on with probability its grey level, from ``seed``
    (so the same images always give the same bits)."""
    return torch.bernoulli(images.detach().float().cpu().clamp(0, 1),
                           generator=torch.Generator().manual_seed(seed)).to(images.device)


def to_8bit_grid(images: Tensor) -> Tensor:
    """Images rounded to the nearest of the 256 grey levels k/255."""
    return torch.round(images.clamp(0, 1) * (LEVELS - 1)) / (LEVELS - 1)


def benchmark_data(benchmark: str, images: Tensor) -> Tensor:
    """The test data ``benchmark`` scores, made from grey-level test images (N,1,28,28) in [0,1]."""
    if benchmark == BINARIZED.key:
        return binarize(images)
    if benchmark == EIGHT_BIT.key:
        return to_8bit_grid(images)
    raise ValueError(f"unknown likelihood benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")


# -- discretized decoders: a continuous output made a distribution over the 256 grey levels ------------------
def _bin_log_probs(cdf_log: Tensor, sf_log: Tensor, mid_log: Tensor, x: Tensor, low: float, high: float) -> Tensor:
    half = (high - low) / (LEVELS - 1) / 2
    return torch.where(x < low + half, cdf_log, torch.where(x > high - half, sf_log, mid_log))


def discretized_gaussian_nll(x: Tensor, mean: Tensor, log_std: Tensor | float, low: float = 0.0,
                             high: float = 1.0) -> Tensor:
    """-ln P(x) per image (N,), summed over pixels, of a Gaussian integrated over each 8-bit bin of
    [low, high]; the edge bins reach to -inf and +inf, so the 256 levels' probabilities sum to 1
    (Ho et al. 2020, eq. 13). x, mean (N,...); log_std broadcasts."""
    half = (high - low) / (LEVELS - 1) / 2
    inv_std = torch.exp(-torch.as_tensor(log_std, dtype=mean.dtype, device=mean.device))
    upper, lower = inv_std * (x - mean + half), inv_std * (x - mean - half)
    mid = torch.log((torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp(min=1e-12))
    log_p = _bin_log_probs(torch.special.log_ndtr(upper), torch.special.log_ndtr(-lower), mid, x, low, high)
    return -log_p.flatten(1).sum(1)


def discretized_logistic_nll(x: Tensor, mean: Tensor, log_scale: Tensor, low: float = 0.0,
                             high: float = 1.0) -> Tensor:
    """-ln P(x) per image (N,) of a logistic integrated over each 8-bit bin of [low, high], edge bins
    open (Salimans et al., PixelCNN++, 2017). x, mean, log_scale (N,...)."""
    half = (high - low) / (LEVELS - 1) / 2
    inv_scale = torch.exp(-log_scale)
    upper, lower = inv_scale * (x - mean + half), inv_scale * (x - mean - half)
    # log(sigmoid(u) - sigmoid(l)) = log(sigmoid(u)) + log(1 - exp(l - u)) + log(sigmoid(-l)) - ... ; the
    # stable form: sigmoid(u) - sigmoid(l) = exp(-softplus(-u)) * exp(-softplus(l)) * (1 - exp(l - u))
    mid = -F.softplus(-upper) - F.softplus(lower) + torch.log(-torch.expm1((lower - upper).clamp(max=-1e-12)))
    log_p = _bin_log_probs(-F.softplus(-upper), -F.softplus(lower), mid, x, low, high)
    return -log_p.flatten(1).sum(1)
