"""Score generative models and reference image sets on equal terms.

Every number the lab shows about a model (the Compare page's scoreboard, ``python -m genlib
eval``, a run's metrics.json, benchmarks/RESULTS.md) comes from ``score_model`` here, so they
agree. A model draws ``num_samples`` images from ``seed``; they are compared with the 4,000
training digits in the digit classifier's features. Reference rows (held-out test digits,
blurred and noisy digits, uniform noise) go through the same ``score_images``, so a user can read
the scale: the test digits are the floor a perfect model that does not copy would reach.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from genlib.data import corrupt, mnist, uniform_noise
from genlib.evaluator import DigitClassifier
from genlib.images import to_uint8
from genlib.likelihood import BENCHMARKS, benchmark_data
from genlib.metrics import (class_coverage, classifier_features, frechet_distance_from_features, kid_from_features,
                            kth_neighbour_radius, mean_squared_error, nearest_neighbours, precision_recall)
from genlib.model import DIGITS, GenerativeModel

SCORE_VERSION = 2            # bump when a metric's definition changes: cached scorecards are then recomputed
# 2: likelihoods on two benchmarks (8-bit bits/dim, binarized nats; genlib.likelihood), p(x) for conditional
#    models, with a standard error
SAMPLE_QUALITY_VERSION = 1   # bump when the sample metrics (Fréchet distance, KID, ...) change: what curves of
#                              sample quality alone (the diffusion steps-vs-quality curve) are keyed by
NUM_EVAL_SAMPLES = 1000
SCORED_KIND = DIGITS   # the data kind the evaluator (a digit classifier) scores; other kinds are never scored
GRID_COUNT = 100             # the first 100 samples form the comparison grid (10 x 10)
CLOSEST_PAIRS = 8            # samples nearest to a training image, shown as the memorisation check
EVAL_SHAPE = (1, 28, 28)     # what the digit classifier judges
ProgressFn = Callable[[float, str], None]  # (fraction done, what is happening)


@dataclass(frozen=True)
class MetricSpec:
    """One scoreboard column: its key in a scorecard, a label, and which way is better."""

    key: str
    label: str
    better: str  # "lower" | "higher" | "" (neither: read it against the reference rows)
    help: str
    format: str = "{:.3f}"

    @property
    def title(self) -> str:
        """The label with the better direction: "Fréchet distance ↓"."""
        return self.label + {"lower": " ↓", "higher": " ↑"}.get(self.better, "")


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("frechet_distance", "Fréchet distance", "lower",
               "Fréchet distance to the training digits in the digit classifier's 128-d features", "{:.1f}"),
    MetricSpec("kid", "KID", "lower", "kernel (MMD²) distance in the same features; unbiased, 0 = same distribution",
               "{:.0f}"),
    MetricSpec("precision", "precision", "higher", "share of samples inside the real-digit manifold (k=3)"),
    MetricSpec("recall", "recall", "higher", "share of real digits inside the samples' manifold (k=3)"),
    MetricSpec("class_entropy_bits", "class entropy (bits)", "higher",
               "entropy of the classifier's predicted-class histogram; log2(10)=3.32 means all digits equally"),
    MetricSpec("class_accuracy", "class accuracy", "higher",
               "conditional models: samples judged as the asked-for digit"),
    MetricSpec("nn_train_distance", "NN distance to train", "",
               "median pixel L2 from a sample to its nearest training digit; near 0 means copying"),
    MetricSpec("bits_per_dim", "bits/dim (8-bit)", "lower",
               "-log2 p(x) per pixel of the 8-bit test digits (exact, or an upper bound where marked)"),
    MetricSpec("binarized_nats", "NLL binarized (nats)", "lower",
               "-ln p(x) per image of the binarized test digits (exact, or an upper bound where marked)", "{:.1f}"),
    MetricSpec("test_recon_mse", "recon MSE", "lower",
               "autoencoders: mean squared reconstruction error on test digits"),
    MetricSpec("sample_ms_per_image", "ms / sample", "lower", "wall time to draw one sample on this device", "{:.3g}"),
    MetricSpec("num_parameters", "parameters", "lower", "every trained parameter (a VAE's encoder, a GAN's D too)",
               "{:,.0f}"),
    MetricSpec("flops_per_sample", "FLOPs / sample", "lower", "floating point operations to draw one sample",
               "{:.3g}"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
# The other entries of a metrics.json, named for people.
_OTHER_LABELS = {"kid_std": "KID standard deviation", "nn_train_distance_min": "NN distance to train (closest)",
                 "likelihood": "likelihood is", "likelihood_benchmark": "likelihood benchmark",
                 "likelihood_stderr": "likelihood standard error", "likelihood_note": "likelihood note",
                 "num_samples": "samples scored", "seed": "seed", "device": "device",
                 "evaluator": "evaluator", "status": "status", "train_steps": "training steps",
                 "train_seconds": "training time (s)", "test_accuracy": "test accuracy ↑", "epochs": "epochs",
                 "note": "note"}


LIKELIHOOD_KEYS = tuple(b.metric for b in BENCHMARKS.values())
LIKELIHOOD_QUALIFIER = {"bound": " (upper bound)", "estimate": " (estimate)", "exact": ""}


def metric_title(key: str, likelihood: str | None = None) -> str:
    """The display name of a metrics.json entry, with its unit and better direction
    ("Fréchet distance ↓"); a likelihood says when it is only an upper bound or an estimate."""
    if key in LIKELIHOOD_KEYS and likelihood:
        return METRIC_BY_KEY[key].title + LIKELIHOOD_QUALIFIER.get(likelihood, "")
    if key in METRIC_BY_KEY:
        return METRIC_BY_KEY[key].title
    return _OTHER_LABELS.get(key, key.replace("_", " "))


@dataclass
class Scorecard:
    """A model's (or a reference set's) metrics, the values it could not have, and what to show.

    ``metrics`` holds numbers (and ``likelihood``: "exact" | "bound"); ``missing`` maps a metric
    key to the reason it is n/a. ``grid`` is (G,H,W) or (G,H,W,3) uint8 of the first samples, one
    row per class for a conditional model; ``closest`` lists the samples nearest to a training
    image as {"sample": i (into ``closest_images``), "train": j, "distance": d}.
    """

    name: str
    kind: str                                   # "model" | "reference"
    family: str
    metrics: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    class_counts: list[int] = field(default_factory=list)
    grid: np.ndarray | None = None
    grid_nrow: int = 10
    closest: list[dict[str, Any]] = field(default_factory=list)
    closest_images: np.ndarray | None = None

    def value(self, key: str) -> Any:
        """The metric ``key``, or None when it is missing."""
        return self.metrics.get(key)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: every metric with its value, or None plus the reason."""
        return {"name": self.name, "kind": self.kind, "family": self.family, "metrics": dict(self.metrics),
                "missing": dict(self.missing), "class_counts": list(self.class_counts)}


@dataclass
class ReferenceData:
    """The fixed data every scorecard is measured against, with its features computed once."""

    classifier: DigitClassifier
    train_images: Tensor     # (4000,1,28,28)
    train_features: Tensor   # (4000,128)
    train_radii: Tensor      # (4000,) each training digit's k-NN radius in feature space (for precision)
    test_images: Tensor      # (1000,1,28,28)
    test_labels: Tensor


def reference_data(classifier: DigitClassifier, features: Tensor | None = None) -> ReferenceData:
    """The training digits with ``classifier``'s features (computed when not given: seconds on CPU)."""
    split = mnist()
    if features is None:
        features = classifier_features(classifier, split.train_images)
    return ReferenceData(classifier, split.train_images, features, kth_neighbour_radius(features),
                         split.test_images, split.test_labels)


def _set_metrics(card: Scorecard, images: Tensor, ref: ReferenceData, seed: int) -> Tensor | None:
    """Fill the metrics every image set has; returns the predicted classes (or None)."""
    if tuple(images.shape[1:]) != EVAL_SHAPE:
        why = (f"the evaluator judges 1x28x28 digits; these images are {'x'.join(map(str, images.shape[1:]))}")
        for key in ("frechet_distance", "kid", "precision", "recall", "class_entropy_bits", "nn_train_distance"):
            card.missing[key] = why
        return None
    feats = classifier_features(ref.classifier, images)
    card.metrics["frechet_distance"] = frechet_distance_from_features(ref.train_features, feats)
    card.metrics["kid"], card.metrics["kid_std"] = kid_from_features(ref.train_features, feats, seed=seed)
    card.metrics["precision"], card.metrics["recall"] = precision_recall(ref.train_features, feats,
                                                                         real_radii=ref.train_radii)
    predicted = ref.classifier.head(feats.to(next(ref.classifier.parameters()).device)).argmax(1).cpu()
    coverage = class_coverage(predicted, ref.classifier.config.num_classes)
    card.class_counts, card.metrics["class_entropy_bits"] = coverage.counts, coverage.entropy_bits
    dist, idx = nearest_neighbours(images, ref.train_images)
    card.metrics["nn_train_distance"] = dist[:, 0].median().item()
    card.metrics["nn_train_distance_min"] = dist[:, 0].min().item()
    order = dist[:, 0].argsort()[:CLOSEST_PAIRS]
    card.closest = [{"sample": k, "sample_index": int(i), "train": int(idx[i, 0]), "distance": float(dist[i, 0])}
                    for k, i in enumerate(order)]
    card.closest_images = to_uint8(images[order])
    return predicted


def _grid(images: Tensor, labels: Tensor | None) -> tuple[np.ndarray, int]:
    """The first GRID_COUNT images; a conditional set is regrouped so row r holds class r."""
    if labels is None:
        return to_uint8(images[:GRID_COUNT]), 10
    classes = sorted(set(labels.tolist()))
    per_class = max(1, GRID_COUNT // len(classes))
    rows = [images[labels == c][:per_class] for c in classes]
    return to_uint8(torch.cat(rows)), per_class


def score_images(name: str, images: Tensor, ref: ReferenceData, *, seed: int = 0,
                 kind: str = "reference") -> Scorecard:
    """Score a fixed image set (N,C,H,W) in [0,1], e.g. a reference row of the scoreboard."""
    card = Scorecard(name, kind, "reference")
    _set_metrics(card, images, ref, seed)
    card.grid, card.grid_nrow = _grid(images, None)
    for key in ("class_accuracy", *LIKELIHOOD_KEYS, "test_recon_mse", "sample_ms_per_image", "num_parameters",
                "flops_per_sample"):
        card.missing[key] = "a fixed image set, not a model"
    return card


@torch.no_grad()
def draw_samples(model: GenerativeModel, n: int, seed: int, progress: ProgressFn | None = None,
                 chunk: int = 250) -> tuple[Tensor, Tensor | None, float]:
    """``n`` samples from ``seed`` (a conditional model gets the classes in equal shares), their
    labels, and the seconds it took."""
    gen = torch.Generator().manual_seed(seed)
    labels = model.default_labels(n)  # the classes in equal shares for a conditional model, else None
    labels = labels.cpu() if labels is not None else None
    chunks, start = [], time.perf_counter()
    for lo in range(0, n, chunk):
        part = labels[lo:lo + chunk].to(model.device) if labels is not None else None
        chunks.append(model.sample(min(chunk, n - lo), generator=gen, labels=part).cpu())
        if progress:
            progress(min(n, lo + chunk) / n, f"sampling {min(n, lo + chunk)}/{n}")
    return torch.cat(chunks), labels, time.perf_counter() - start


@torch.no_grad()
def flops_per_sample(model: GenerativeModel, seed: int = 0) -> int:
    """FLOPs to draw one sample (torch.utils.flop_counter; matmuls and convolutions), from a batch of 2."""
    gen = torch.Generator().manual_seed(seed)
    labels = model.default_labels(2)
    with FlopCounterMode(display=False) as counter:
        model.sample(2, generator=gen, labels=labels)
    return counter.get_total_flops() // 2


@torch.no_grad()
def _likelihood_metrics(card: Scorecard, model: GenerativeModel, ref: ReferenceData, seed: int) -> None:
    """-log p(x) of the test digits on the model's benchmark (``genlib.likelihood``): its mean, the
    standard error of that mean over the test digits, and its kind. Conditional models score p(x)
    (labels None), so every value on a panel is the same quantity."""
    benchmark = BENCHMARKS.get(model.likelihood_benchmark())
    if benchmark is None:
        why = model.likelihood_note() or f"{model.family} has no likelihood to evaluate"
        for key in LIKELIHOOD_KEYS:
            card.missing[key] = why
        return
    dev, gen = model.device, torch.Generator().manual_seed(seed)
    data = benchmark_data(benchmark.key, ref.test_images)
    bpd = torch.cat([model.bits_per_dim(x.to(dev), None, generator=gen).cpu() for x in data.split(500)])
    values = benchmark.from_bits_per_dim(bpd.double(), data[0].numel())
    card.metrics[benchmark.metric] = values.mean().item()
    # the spread over the test digits, and the estimator's own error (AIS's log Z), which moves them all together
    own = benchmark.from_bits_per_dim(torch.tensor(model.likelihood_uncertainty(), dtype=torch.float64) /
                                      (data[0].numel() * math.log(2)), data[0].numel()).item()
    card.metrics["likelihood_stderr"] = math.hypot((values.std() / math.sqrt(len(values))).item(), own)
    card.metrics["likelihood"] = model.likelihood
    card.metrics["likelihood_benchmark"] = benchmark.key
    if model.likelihood_note():
        card.metrics["likelihood_note"] = model.likelihood_note()
    for other in BENCHMARKS.values():
        if other is not benchmark:
            card.missing[other.metric] = (f"its likelihood is measured on the {benchmark.title.lower()} instead: "
                                          f"{benchmark.data}")


@torch.no_grad()
def _test_set_metrics(card: Scorecard, model: GenerativeModel, ref: ReferenceData, seed: int) -> None:
    """Likelihood and reconstruction error on the held-out test digits, where the model has them."""
    dev = model.device
    pairs = list(zip(ref.test_images.split(500), ref.test_labels.split(500)))
    cond = (lambda y: y.to(dev)) if model.conditional else (lambda y: None)
    _likelihood_metrics(card, model, ref, seed)
    if model.has("reconstruct"):
        recon = torch.cat([model.reconstruct(x.to(dev), cond(y)).cpu() for x, y in pairs])
        card.metrics["test_recon_mse"] = mean_squared_error(recon, ref.test_images).mean().item()
    else:
        card.missing["test_recon_mse"] = f"{model.family} does not reconstruct inputs"


@torch.no_grad()
def score_model(model: GenerativeModel, name: str, ref: ReferenceData, *, num_samples: int = NUM_EVAL_SAMPLES,
                seed: int = 0, progress: ProgressFn | None = None) -> Scorecard:
    """Every metric of ``model``: quality, coverage, memorisation, likelihood and cost."""
    if num_samples < 10:
        raise ValueError(f"scoring needs at least 10 samples, got {num_samples}")
    kind = model.trained_data()
    if kind != SCORED_KIND:
        raise ValueError(f"{name} draws {kind.name}; the lab's evaluator is a digit classifier, so it scores "
                         f"{SCORED_KIND.name} only")
    report = progress or (lambda fraction, message: None)
    model.eval()
    card = Scorecard(name, "model", model.family)
    samples, labels, seconds = draw_samples(model, num_samples, seed,
                                            lambda f, msg: report(0.6 * f, msg))
    report(0.65, "features, KID, precision/recall, nearest neighbours")
    predicted = _set_metrics(card, samples, ref, seed)
    card.grid, card.grid_nrow = _grid(samples, labels)
    if model.conditional and predicted is not None:
        card.metrics["class_accuracy"] = (predicted == labels).float().mean().item()
    elif not model.conditional:
        card.missing["class_accuracy"] = "unconditional model: no class is asked for"
    else:
        card.missing["class_accuracy"] = card.missing["frechet_distance"]
    report(0.8, "likelihood and reconstructions on the test digits")
    if tuple(samples.shape[1:]) == EVAL_SHAPE:
        _test_set_metrics(card, model, ref, seed)
    else:
        for key in (*LIKELIHOOD_KEYS, "test_recon_mse"):
            card.missing[key] = "the test digits are 1x28x28"
    report(0.95, "cost")
    card.metrics["sample_ms_per_image"] = 1000 * seconds / num_samples
    card.metrics["num_parameters"] = model.num_parameters()
    card.metrics["flops_per_sample"] = flops_per_sample(model, seed)
    card.metrics.update(num_samples=num_samples, seed=seed, device=str(model.device))
    report(1.0, "done")
    return card


def blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of images (N,1,H,W) in [0,1] (scikit-image), for the 'blurred digits' reference."""
    from skimage.filters import gaussian

    out = gaussian(images.numpy(), sigma=(0, 0, sigma, sigma), preserve_range=True)
    return torch.from_numpy(np.asarray(out, dtype=np.float32))


REFERENCE_SETS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "real test digits": lambda test, seed: test,
    "blurred digits (σ=1)": lambda test, seed: blur(test, 1.0),
    "noisy digits (σ=0.3)": lambda test, seed: corrupt(test, 0.3, torch.Generator().manual_seed(seed)),
    "uniform noise": lambda test, seed: uniform_noise(len(test), seed=seed),
}


def reference_scorecards(ref: ReferenceData, seed: int = 0) -> list[Scorecard]:
    """The scale to read model scores against: held-out digits (the floor) down to pure noise."""
    return [score_images(name, make(ref.test_images, seed), ref, seed=seed) for name, make in REFERENCE_SETS.items()]


def scoreboard_rows(cards: list[Scorecard]) -> list[dict[str, Any]]:
    """One flat row per scorecard: name, family, every metric (None when missing), and the reasons."""
    rows = []
    for card in cards:
        row: dict[str, Any] = {"model": card.name, "family": card.family, "kind": card.kind}
        for spec in METRICS:
            row[spec.key] = card.metrics.get(spec.key)
        row["likelihood"] = card.metrics.get("likelihood")
        row["n/a because"] = "; ".join(f"{METRIC_BY_KEY[k].label}: {why}" for k, why in card.missing.items()
                                       if k in METRIC_BY_KEY)
        rows.append(row)
    return rows


def is_number(value: Any) -> bool:
    """True for a finite int or float (not a bool, not nan or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
