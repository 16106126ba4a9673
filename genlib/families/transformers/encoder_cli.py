"""The encoder CLI: ``python -m genlib pretrain-encoder --out DIR`` and ``python -m genlib finetune SOURCE --out DIR``.

``pretrain-encoder`` pretrains the lab's small BERT by masked-language modelling on the corpus
(flags generated from ``PretrainConfig``); ``finetune`` fine-tunes any encoder (a folder, a shipped
or run name, a hub id) on the built-in "stdlib-docs" set or ``--csv FILE`` and prints the test
metrics beside the TF-IDF baseline as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genlib.checkpoints import CheckpointError
from genlib.cli import Command, _add_config_flags, _picked
from genlib.families.transformers.encoder import FinetuneConfig, encoder_folder, finetune_encoder
from genlib.families.transformers.encoder_pretrain import PretrainConfig, pretrain_encoder
from genlib.families.transformers.textclass import MAX_CSV_BYTES, builtin_dataset, read_csv_dataset

PRINT_EVERY = 25


def _progress(step: int, total: int, message: str, scalars: dict[str, float]) -> None:
    if step % PRINT_EVERY == 0 or step == total:
        print(f"{message} loss={scalars['loss']:.4f} lr={scalars['lr']:.2e}", file=sys.stderr, flush=True)


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the transformers folder to write")
    _add_config_flags(p, PretrainConfig, "encoder and pretraining")


def run_pretrain(args: argparse.Namespace) -> int:
    """Pretrain the small encoder and print its held-out masked-LM metrics as JSON."""
    config = PretrainConfig.from_dict(_picked(args, PretrainConfig))
    metrics = pretrain_encoder(config, args.out, report=_progress)
    print(json.dumps(metrics, indent=2))
    print(f"saved {args.out}", file=sys.stderr)
    return 0


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="an encoder: a transformers folder, a shipped checkpoint or run name, or a "
                                  "Hugging Face id (bert-base-uncased, online)")
    p.add_argument("--out", required=True, help="the folder to save the fine-tuned model in")
    p.add_argument("--csv", help="a CSV file with the columns text,label (default: the built-in stdlib-docs set)")
    p.add_argument("--record", action="store_true",
                   help="also store the test figures and the baseline under 'finetune' in SOURCE's metrics.json "
                        "(a local folder only)")
    _add_config_flags(p, FinetuneConfig, "fine-tuning")


def run_finetune(args: argparse.Namespace) -> int:
    """Fine-tune SOURCE and print the test metrics and the TF-IDF baseline as JSON."""
    config = FinetuneConfig.from_dict(_picked(args, FinetuneConfig))
    if args.csv:
        path = Path(args.csv)
        if not path.is_file():
            raise ValueError(f"no CSV file at {args.csv}")
        if path.stat().st_size > MAX_CSV_BYTES:
            raise ValueError(f"{path.name} is larger than {MAX_CSV_BYTES // 2**20} MB, the most a CSV may be")
        dataset = read_csv_dataset(path.read_bytes(), path.name)
    else:
        dataset = builtin_dataset()
    folder = encoder_folder(args.source)   # a bad source fails now, before the baseline is fitted
    result = finetune_encoder(args.source, dataset, config, args.out, report=_progress,
                              log=lambda message: print(message, file=sys.stderr, flush=True))
    m = result.metrics
    summary = {"source": m["source"], "dataset": m["dataset"]["name"], "labels": m["labels"],
               "test": m["test"], "baseline": m["baseline"], "beats_baseline": m["beats_baseline"],
               "best_epoch": m["best_epoch"], "lr": m["lr_used"], "train_seconds": m["train_seconds"],
               "saved": str(result.path)}
    print(json.dumps(summary, indent=2))
    if args.record:
        _record(folder, m)
    return 0


def _record(folder: Path, metrics: dict) -> None:
    """Add the fine-tune's test figures to the source folder's metrics.json (under "finetune")."""
    target = folder / "metrics.json"
    old = json.loads(target.read_text()) if target.is_file() else {}
    if not isinstance(old, dict):
        raise CheckpointError(f"{target} is not a JSON object; not recording there")
    keep = ("dataset", "test", "baseline", "beats_baseline", "best_epoch", "best_val_accuracy", "train_steps",
            "train_seconds", "finetune", "lr_used")
    old["finetune"] = {k: metrics[k] for k in keep if k in metrics}
    target.write_text(json.dumps(old, indent=2))
    print(f"recorded the fine-tune in {target}", file=sys.stderr)


ENCODER_COMMANDS = (
    Command("pretrain-encoder", "pretrain the lab's small BERT by masked-language modelling on the corpus",
            _pretrain_arguments, run_pretrain),
    Command("finetune", "fine-tune an encoder for text classification and compare it with TF-IDF; prints JSON",
            _finetune_arguments, run_finetune),
)
