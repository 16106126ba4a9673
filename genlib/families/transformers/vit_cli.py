"""The ViT's CLI: ``python -m genlib train-vit --out FOLDER [--epochs N --patch-size 4 ...]`` and
``python -m genlib eval-vit SOURCE`` (test accuracy on the 1,000 held-out digits, as JSON).

The flags of ``train-vit`` are generated from ``ViTConfig`` and ``ViTTrainConfig``.
"""
from __future__ import annotations

import argparse
import json
import time

from genlib.cli import Command, _add_config_flags, _picked
from genlib.families.transformers.vit import ViTConfig, ViTTrainConfig, load_vit_source, main_train


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
