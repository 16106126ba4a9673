"""Pure metric functions. Features come from the project's digit classifier (genlib.evaluator)."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance

from genlib.evaluator import DigitClassifier, FeatureExtractor


@torch.no_grad()
def frechet_distance(real: Tensor, fake: Tensor, classifier: DigitClassifier, batch: int = 500) -> float:
    """Fréchet distance between two image sets (N,1,28,28) in [0,1], in the classifier's features.

    torchmetrics' FID with a custom extractor; it needs at least 2 images in each set.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 images per set, got {len(real)} and {len(fake)}")
    fid = FrechetInceptionDistance(feature=FeatureExtractor(classifier), normalize=True)
    dev = next(classifier.parameters()).device
    for images, is_real in ((real, True), (fake, False)):
        for xb in images.split(batch):
            fid.update(xb.to(dev).float(), real=is_real)
    return float(fid.compute())


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
