"""Pure metric functions. Features come from the project's digit classifier (genlib.evaluator).

Every set-level metric compares a set of images (N,1,28,28) in [0,1] with a reference set. The
Fréchet distance and KID use torchmetrics' FID/KID in the classifier's 128-d feature layer (the
role Inception plays in FID/KID), fed features computed once per image set. Precision/recall, class coverage and
memorisation are small enough to write out here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from genlib.evaluator import DigitClassifier


@torch.no_grad()
def classifier_features(classifier: DigitClassifier, images: Tensor, batch: int = 500) -> Tensor:
    """The classifier's feature vectors (N,D) on the CPU for images (N,1,28,28) in [0,1]."""
    dev = next(classifier.parameters()).device
    return torch.cat([classifier.features(xb.to(dev).float()).cpu() for xb in images.split(batch)])


class _GivenFeatures(nn.Module):
    """A 'feature extractor' for torchmetrics that receives features already computed.

    The classifier's features of the 4,000 training digits are computed once and reused for every
    model; feeding them through this identity keeps torchmetrics' FID/KID arithmetic.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features  # torchmetrics reads this instead of probing the module

    def forward(self, features: Tensor) -> Tensor:
        return features


def _check_sizes(name: str, real: Tensor, fake: Tensor, least: int = 2) -> None:
    if len(real) < least or len(fake) < least:
        raise ValueError(f"{name} needs at least {least} images per set, got {len(real)} and {len(fake)}")


@torch.no_grad()
def frechet_distance_from_features(real_features: Tensor, fake_features: Tensor) -> float:
    """Fréchet distance between two feature sets (N,D), (M,D) (torchmetrics' FID arithmetic)."""
    _check_sizes("the Fréchet distance", real_features, fake_features)
    fid = FrechetInceptionDistance(feature=_GivenFeatures(real_features.shape[1]))
    fid.update(real_features.double(), real=True)
    fid.update(fake_features.double(), real=False)
    return float(fid.compute())


@torch.no_grad()
def frechet_distance(real: Tensor, fake: Tensor, classifier: DigitClassifier) -> float:
    """Fréchet distance between two image sets in the classifier's features (FID's formula)."""
    _check_sizes("the Fréchet distance", real, fake)
    return frechet_distance_from_features(classifier_features(classifier, real), classifier_features(classifier, fake))


@torch.no_grad()
def kid_from_features(real_features: Tensor, fake_features: Tensor, *, subsets: int = 10,
                      subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over random subsets) between feature sets, with torchmetrics' arithmetic.

    KID is the unbiased estimate of the squared MMD with a cubic polynomial kernel, so unlike the
    Fréchet distance its expected value for two sets from one distribution is 0 at any set size
    (a single estimate can be slightly negative). Subsets are drawn from ``seed`` with a generator of
    their own: torchmetrics' ``compute`` draws them from the global RNG, which another thread (a
    training job, a second scoring task) moves at any moment. The draws are the same as torchmetrics'
    after ``torch.manual_seed(seed)``.
    """
    _check_sizes("KID", real_features, fake_features)
    size = min(subset_size, len(real_features), len(fake_features))
    real, fake = real_features.float().cpu(), fake_features.float().cpu()
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        f_real = real[torch.randperm(len(real), generator=gen)[:size]]
        f_fake = fake[torch.randperm(len(fake), generator=gen)[:size]]
        scores.append(poly_mmd(f_real, f_fake, degree=3, gamma=None, coef=1.0))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False))


def _kth_neighbour_radius(features: Tensor, k: int, batch: int = 1000) -> Tensor:
    """Distance from each row of ``features`` (N,D) to its k-th nearest other row: (N,)."""
    radii = []
    for fb in features.split(batch):
        d = torch.cdist(fb, features)               # (b,N); the point itself is at distance 0
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside_any_ball(points: Tensor, centres: Tensor, radii: Tensor, batch: int = 1000) -> Tensor:
    """For each point (M,D): is it within radii[j] of some centre j (N,D)? -> (M,) bool."""
    hits = [(torch.cdist(pb, centres) <= radii.unsqueeze(0)).any(dim=1) for pb in points.split(batch)]
    return torch.cat(hits)


def kth_neighbour_radius(features: Tensor, k: int = 3) -> Tensor:
    """Radius of each point's ball in the k-NN manifold (N,); pass it to ``precision_recall`` to reuse it."""
    return _kth_neighbour_radius(features.float().cpu(), k)


@torch.no_grad()
def precision_recall(real_features: Tensor, fake_features: Tensor, k: int = 3,
                     real_radii: Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) on feature sets (N,D) and (M,D).

    Each set's manifold is the union of balls around its points, radius = distance to the k-th
    nearest neighbour in the same set. Precision: share of fakes inside the real manifold (are
    samples realistic?). Recall: share of reals inside the fake manifold (is all of the data
    covered?). A model that drops a class keeps its precision but loses recall.
    """
    if len(real_features) <= k or len(fake_features) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points per set")
    real, fake = real_features.float().cpu(), fake_features.float().cpu()
    real_radii = _kth_neighbour_radius(real, k) if real_radii is None else real_radii
    precision = _inside_any_ball(fake, real, real_radii).float().mean().item()
    recall = _inside_any_ball(real, fake, _kth_neighbour_radius(fake, k)).float().mean().item()
    return precision, recall


@dataclass
class ClassCoverage:
    """How a sample set spreads over the classes the classifier knows."""

    counts: list[int]        # images predicted as each class
    entropy_bits: float      # of the predicted-class histogram; log2(K) when all K are equally common

    @property
    def max_entropy_bits(self) -> float:
        """log2(K): the entropy when all K classes are equally common."""
        return math.log2(len(self.counts))


def class_coverage(predicted: Tensor, num_classes: int) -> ClassCoverage:
    """Histogram of predicted classes (N,) and its entropy: a collapsed model has low entropy."""
    return coverage_from_counts(torch.bincount(predicted.cpu().long(), minlength=num_classes)[:num_classes].tolist())


def coverage_from_counts(counts: list[int]) -> ClassCoverage:
    """A class histogram (K,) and its entropy in bits."""
    counts = torch.tensor(counts, dtype=torch.long)
    p = counts.float() / counts.sum().clamp(min=1)
    entropy = -(p[p > 0] * p[p > 0].log2()).sum().item()
    return ClassCoverage([int(c) for c in counts], max(0.0, entropy))  # max: no "-0.0" for one class


@torch.no_grad()
def nearest_neighbours(queries: Tensor, pool: Tensor, k: int = 1, batch: int = 500) -> tuple[Tensor, Tensor]:
    """Pixel-space (L2) nearest neighbours of each query image in ``pool``: distances and indices (M,k).

    With ``pool`` the training set this is the memorisation check: a sample at distance ≈0 from a
    training image is a copy of it.
    """
    pool_flat = pool.flatten(1).float().cpu()
    dists, idx = [], []
    for qb in queries.flatten(1).float().cpu().split(batch):
        _, i = torch.cdist(qb, pool_flat).topk(k, dim=1, largest=False)
        # cdist's fast matmul form is off by ~1e-3; recompute the k found distances exactly, so a
        # copied training image measures 0 (the order can only change among near-ties)
        d = (qb.unsqueeze(1) - pool_flat[i]).norm(dim=2)
        d, order = d.sort(dim=1)
        dists.append(d)
        idx.append(i.gather(1, order))
    return torch.cat(dists), torch.cat(idx)


def nats_to_bits_per_dim(nats: Tensor | float, dims: int) -> Tensor | float:
    """Convert a negative log-likelihood in nats per image to bits per dimension."""
    return nats / (dims * math.log(2.0))


@torch.no_grad()
def class_accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    """Share of images the classifier assigns to the label they were drawn for."""
    return (classifier.predict(images) == labels.cpu()).float().mean().item()


def mean_squared_error(a: Tensor, b: Tensor) -> Tensor:
    """Per-image mean squared error (N,)."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)
