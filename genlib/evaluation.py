"""Score a model on the fixed test split: the numbers that go into metrics.json."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from genlib.data import mnist
from genlib.evaluator import DigitClassifier, load_classifier
from genlib.metrics import class_accuracy, frechet_distance, mean_squared_error
from genlib.model import GenerativeModel

NUM_EVAL_SAMPLES = 1000  # the size of the test split


@torch.no_grad()
def sample_for_eval(model: GenerativeModel, n: int, seed: int) -> tuple[Tensor, Tensor | None]:
    """``n`` samples; a conditional model gets the classes in equal shares."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % model.num_classes if model.conditional else None
    chunks = []
    for start in range(0, n, 250):
        chunk_labels = labels[start:start + 250] if labels is not None else None
        chunks.append(model.sample(min(250, n - start), generator=gen, labels=chunk_labels).cpu())
    images = torch.cat(chunks)
    return images.cpu(), labels


@torch.no_grad()
def evaluate(model: GenerativeModel, *, classifier: DigitClassifier | None = None,
             num_samples: int = NUM_EVAL_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Fréchet distance to the test digits (always), negative ELBO in bits/dim (VAEs),
    class accuracy (conditional models), reconstruction error (autoencoders)."""
    classifier = classifier or load_classifier()
    split = mnist()
    test_x, test_y = split.test_images, split.test_labels
    model.eval()
    start = time.perf_counter()
    samples, labels = sample_for_eval(model, num_samples, seed)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {
        "frechet_distance": frechet_distance(test_x, samples, classifier),
        "evaluator": "digit-classifier",
        "num_samples": num_samples,
        "seed": seed,
        "num_parameters": model.num_parameters(),
        "sample_ms_per_image": 1000 * seconds / num_samples,
    }
    dev = model.device
    cond = (lambda y: y.to(dev)) if model.conditional else (lambda y: None)
    if model.has("log_likelihood"):
        gen = torch.Generator().manual_seed(seed)
        bpd = torch.cat([model.bits_per_dim(xb.to(dev), cond(yb), generator=gen).cpu()
                         for xb, yb in zip(test_x.split(500), test_y.split(500))])
        metrics["nelbo_bits_per_dim"] = bpd.mean().item()
        metrics["likelihood_is_bound"] = bool(getattr(model, "likelihood_is_bound", True))
    if model.has("reconstruct"):
        recon = torch.cat([model.reconstruct(xb.to(dev), cond(yb)).cpu()
                           for xb, yb in zip(test_x.split(500), test_y.split(500))])
        metrics["test_recon_mse"] = mean_squared_error(recon, test_x).mean().item()
    if model.conditional:
        metrics["class_accuracy"] = class_accuracy(classifier, samples, labels)
    return metrics
