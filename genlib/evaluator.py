"""The project's own digit classifier: the judge for Fréchet distance and class accuracy.

It is a small CNN trained on the training split. Its 128-d penultimate layer is the feature
space for the Fréchet distance (the role Inception plays in FID), and its predictions judge
whether a conditional model drew the digit it was asked for. It ships as a checkpoint folder
(``checkpoints/digit-classifier``) in the same safetensors format as every model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlib.checkpoints import CheckpointError, load_state, read_info, save_folder, shipped_dir
from genlib.config import Config, setting
from genlib.training import pick_device, seed_everything

EVALUATOR_NAME = "digit-classifier"
EVALUATOR_FAMILY = "digit-classifier"


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """The digit classifier's shape: conv width, feature size and number of classes."""

    width: int = setting(32, "channels of the first conv block", min=8, max=128)
    features: int = setting(128, "size of the feature layer used for Fréchet distance", min=16, max=1024)
    num_classes: int = setting(10, "number of classes", min=2, max=100)


class DigitClassifier(nn.Module):
    """(B,1,28,28) in [0,1] -> logits (B,num_classes); ``features`` gives (B,features)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * w * 49, config.features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(config.features, config.num_classes))
        self.num_features = config.features

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features (B,features) of images (B,1,28,28) in [0,1]: the Fréchet space."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B,num_classes) for images (B,1,28,28) in [0,1]."""
        return self.head(self.body(x))

    @torch.no_grad()
    def predict(self, x: Tensor, batch: int = 500) -> Tensor:
        """Predicted classes (B,) int64 on the CPU, computed ``batch`` images at a time on the model's device."""
        dev = next(self.parameters()).device
        return torch.cat([self(xb.to(dev)).argmax(1).cpu() for xb in x.split(batch)])


def _shift(x: Tensor, gen: torch.Generator, max_shift: int = 2) -> Tensor:
    """Random translation by up to ``max_shift`` pixels (cheap augmentation)."""
    padded = F.pad(x, [max_shift] * 4)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def train_classifier(images: Tensor, labels: Tensor, *, epochs: int = 40, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, device: str = "auto",
                     on_epoch: Callable[[int, float], None] | None = None) -> DigitClassifier:
    """Train a fresh classifier with shift augmentation and a one-cycle schedule."""
    gen = seed_everything(seed)
    dev = pick_device(device)
    model = DigitClassifier().to(dev).train()
    steps_per_epoch = images.shape[0] // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for epoch in range(epochs):
        order = torch.randperm(images.shape[0], generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x, y = _shift(images[idx], gen).to(dev), labels[idx].to(dev)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch:
            on_epoch(epoch + 1, loss.item())
    return model.eval()


def save_classifier(model: DigitClassifier, folder: str | Path, metrics: dict) -> Path:
    """Save ``model`` as an evaluator checkpoint folder with metrics.json and a README; return the folder."""
    import json

    meta = {"family": EVALUATOR_FAMILY, "kind": "evaluator", "model": model.config.to_dict()}
    card = (f"# Digit classifier (evaluator)\n\nJudge for Fréchet distance and class accuracy.\n\n"
            f"Test accuracy on the fixed 1,000-digit test split: {metrics['test_accuracy']:.4f}\n")
    return save_folder(folder, model, meta, {"metrics.json": json.dumps(metrics, indent=2), "README.md": card})


def load_classifier(folder: str | Path | None = None) -> DigitClassifier:
    """Load the shipped evaluator (or the one in ``folder``)."""
    folder = Path(folder) if folder else shipped_dir() / EVALUATOR_NAME
    if not folder.exists():
        raise CheckpointError(f"the evaluator checkpoint {folder} is missing; train it with "
                              f"`python -m genlib train-evaluator --out {folder}`")
    info = read_info(folder)
    if info.family != EVALUATOR_FAMILY:
        raise CheckpointError(f"{folder} is a {info.family!r} checkpoint, not the digit classifier")
    model = DigitClassifier(ClassifierConfig.from_dict(info.model_config))
    load_state(folder, model)
    return model.eval()


def main_train(out: str | Path, epochs: int = 40, seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Train, test and save the evaluator; returns its metrics."""
    from genlib.data import mnist

    split = mnist()
    start = time.perf_counter()
    model = train_classifier(split.train_images, split.train_labels, epochs=epochs, seed=seed,
                             on_epoch=lambda e, loss: log(f"epoch {e}/{epochs} loss {loss:.4f}"))
    acc = (model.predict(split.test_images) == split.test_labels).float().mean().item()
    metrics = {"test_accuracy": acc, "train_seconds": round(time.perf_counter() - start, 1), "epochs": epochs,
               "seed": seed}
    save_classifier(model.cpu(), out, metrics)
    log(f"test accuracy {acc:.4f}; saved to {out}")
    return metrics
