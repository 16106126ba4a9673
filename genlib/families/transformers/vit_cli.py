"""The ViT's CLI: ``python -m genlib train-vit --out FOLDER [--epochs N --patch-size 4 ...]`` and
``python -m genlib eval-vit SOURCE`` (test accuracy on the 1,000 held-out digits, as JSON).

The flags of ``train-vit`` are generated from ``ViTConfig`` and ``ViTTrainConfig``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch

from genlib.checkpoints import store_half_precision
from genlib.cli import Command, _add_config_flags, _picked
from genlib.families.transformers.vit import VisionTransformer, ViTConfig, ViTTrainConfig, accuracy, save_vit, train_vit
from genlib.families.transformers.vit_explain import load_vit_source, rollout_preview
from genlib.images import to_png
from genlib.training import pick_device


def main_train(out: str | Path, config: ViTConfig = ViTConfig(), train: ViTTrainConfig = ViTTrainConfig(),
               log: Callable[[str], None] = print) -> dict:
    """Train, test and save a ViT on the lab's digits (with a rollout preview); returns its metrics."""
    from genlib.data import mnist

    split = mnist()
    start = time.perf_counter()
    model = train_vit(split.train_images, split.train_labels, config, train,
                      on_epoch=lambda e, loss: log(f"epoch {e}/{train.epochs} loss {loss:.4f} "
                                                   f"({time.perf_counter() - start:.0f} s)"))
    seconds = time.perf_counter() - start
    acc = round(accuracy(model, split.test_images, split.test_labels), 4)   # a whole number of digits / 1,000
    # Shipped as float16 when that changes no test prediction (load_state casts back to float32).
    rounded = VisionTransformer(config)
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    half = round(accuracy(rounded.eval(), split.test_images, split.test_labels), 4) == acc
    metrics = {"test_accuracy": acc, "test_images": int(split.test_labels.numel()), "train_seconds": round(seconds, 1),
               "epochs": train.epochs, "seed": train.seed, "parameters": sum(p.numel() for p in model.parameters()),
               "device": str(pick_device(train.device)), "threads": torch.get_num_threads(),
               "weights": "float16" if half else "float32"}
    preview = to_png(rollout_preview(model, split.test_images[:8]), scale=4)
    save_vit(model, out, metrics, train, {"samples.png": preview})
    if half:
        store_half_precision(out)
    log(f"test accuracy {acc:.4f} after {seconds:.0f} s ({metrics['weights']} weights); saved to {out}")
    return metrics


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the checkpoint folder to write")
    _add_config_flags(p, ViTConfig, "ViT model")
    _add_config_flags(p, ViTTrainConfig, "ViT training")


def run_train(args: argparse.Namespace) -> int:
    """Train a ViT on the lab's digits, test it and save the folder."""
    config = ViTConfig.from_dict(_picked(args, ViTConfig))
    train = ViTTrainConfig.from_dict(_picked(args, ViTTrainConfig))
    main_train(args.out, config, train, log=lambda line: print(line, flush=True))
    return 0


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a ViT checkpoint name or folder, or a Hugging Face ViT folder or hub id")


def run_eval(args: argparse.Namespace) -> int:
    """Print a ViT's accuracy on the 1,000 test digits as JSON."""
    import torch

    from genlib.data import mnist

    source = load_vit_source(args.source)
    split = mnist()
    start = time.perf_counter()
    with torch.no_grad():
        predicted = [source.explain(image).probs.argmax().item() for image in split.test_images] if source.hf else \
            source.model.predict(split.test_images).tolist()
    names = [source.labels[i] for i in predicted]
    correct = sum(name == str(int(label)) for name, label in zip(names, split.test_labels))
    result = {"source": args.source, "test_accuracy": correct / len(names), "test_images": len(names),
              "seconds": round(time.perf_counter() - start, 2)}
    stored = source.metrics.get("test_accuracy")
    if isinstance(stored, (int, float)):
        result["stored_test_accuracy"] = stored
    print(json.dumps(result, indent=2))
    return 0


VIT_COMMANDS = (
    Command("train-vit", "train the Vision Transformer on the lab's digits and save it; flags from its config",
            _train_arguments, run_train),
    Command("eval-vit", "print a ViT's accuracy on the 1,000 test digits as JSON", _eval_arguments, run_eval),
)
