"""``python -m genlib list | train | train-evaluator | sample | eval | half | references | compare | steps-quality``.

Model and training flags for ``train`` are generated from the family's config dataclass, so
every hyper-parameter the app shows is also a flag here (``--latent-dim 16 --beta 0.5``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from genlib.checkpoints import CheckpointError, list_checkpoints, load_model
from genlib.config import Config, ConfigError, TrainConfig
from genlib.registry import UnknownFamilyError, families, get_family
from genlib.training import TrainingDiverged, pick_device


def _add_config_flags(parser: argparse.ArgumentParser, config_cls: type[Config], group_title: str) -> None:
    group = parser.add_argument_group(group_title)
    for spec in config_cls.field_specs():
        flag = "--" + spec["name"].replace("_", "-")
        kind = spec["type"]
        help_text = f"{spec.get('help', '')} (default {spec['default']})"
        if kind is bool:
            group.add_argument(flag, dest=spec["name"], action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(flag, dest=spec["name"], type=kind, default=None, choices=spec.get("choices"),
                               help=help_text)


def _picked(args: argparse.Namespace, config_cls: type[Config]) -> dict[str, Any]:
    return {s["name"]: getattr(args, s["name"]) for s in config_cls.field_specs()
            if getattr(args, s["name"], None) is not None}


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Lines of a plain-text table: a header row, then ``rows``, every column as wide as its widest
    cell and two spaces apart; the columns in ``right`` (numbers) are right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{cell:>{w}}" if i in right else f"{cell:<{w}}"
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _number(value: Any) -> str:
    """A metric for the table: three decimals, or "-" when the checkpoint has not measured it."""
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def cmd_list(_: argparse.Namespace) -> int:
    """Print the registered families and every checkpoint, each as an aligned table with a header row.

    Generative models are scored by Fréchet distance (lower is better); the digit classifier that
    scores them by its test accuracy. The two are different measures, so each has its own column.
    """
    print("families:")
    rows = [(name, cls.description, ", ".join(sorted(cls.abilities)) or "-") for name, cls in families().items()]
    print("\n".join("  " + line for line in _table(("family", "description", "abilities"), rows)))
    print("checkpoints:")
    rows = [(info.name, info.family, info.origin, _number(info.metrics.get("frechet_distance")),
             _number(info.metrics.get("test_accuracy")), str(info.path))
            for info in list_checkpoints(include_evaluators=True)]
    print("\n".join("  " + line for line in _table(("name", "family", "origin", "FD ↓", "accuracy", "path"),
                                                     rows, right=(3, 4))))
    return 0


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from genlib.runs import train_run

    cls = get_family(args.family)
    # --out lives here, not on the `train` subcommand, so `train FAMILY --help` works without it.
    parser = argparse.ArgumentParser(prog=f"python -m genlib train {args.family}")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    _add_config_flags(parser, cls.Config, f"{args.family} model")
    _add_config_flags(parser, TrainConfig, "training")
    opts = parser.parse_args(extra)
    model_config = cls.Config.from_dict(_picked(opts, cls.Config))
    train = TrainConfig.from_dict(_picked(opts, TrainConfig))
    try:
        pick_device(train.device)  # refuse --device cuda without a GPU now, as a one-line error
    except RuntimeError as err:
        raise ConfigError(str(err)) from None

    def report(progress, _model):
        if progress.step % 50 == 0 or progress.step == progress.total_steps:
            scalars = " ".join(f"{k}={v:.4g}" for k, v in progress.scalars.items())
            print(f"step {progress.step}/{progress.total_steps} epoch {progress.epoch} {scalars} "
                  f"eta {progress.eta_s:.0f}s", flush=True)

    train_run(args.family, model_config, train, opts.out, callbacks=[report], log=print)
    return 0


def cmd_train_evaluator(args: argparse.Namespace) -> int:
    from genlib.evaluator import main_train

    main_train(args.out, epochs=args.epochs, seed=args.seed)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    model, info = load_model(args.source)
    gen = torch.Generator().manual_seed(args.seed)
    labels = None
    if model.conditional:
        if args.labels:
            labels = torch.tensor([int(v) for v in args.labels.split(",")])
            if labels.numel() != args.num:
                labels = labels.repeat(-(-args.num // labels.numel()))[: args.num]
        else:
            labels = model.default_labels(args.num)
    elif args.labels:
        raise ConfigError(f"{info.name} is unconditional; --labels does not apply")
    images = model.sample(args.num, generator=gen, labels=labels).float().cpu().numpy()
    if images.shape[1] == 1:
        images = images[:, 0]  # (N,H,W) for one channel
    arrays = {"images": images.astype(np.float32)}
    if labels is not None:
        arrays["labels"] = labels.cpu().numpy().astype(np.int64)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"wrote {images.shape[0]} samples {tuple(images.shape)} to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from genlib.checkpoints import resolve, write_extra
    from genlib.comparison import Evaluator, score_checkpoint, write_checkpoint_scorecard
    from genlib.evaluation import metrics_dict

    evaluator = Evaluator.load()
    card = score_checkpoint(args.source, evaluator, num_samples=args.num, seed=args.seed,
                            progress=_stderr_progress)
    metrics = metrics_dict(card)
    print(json.dumps(metrics, indent=2))
    if args.write:
        folder, origin = resolve(args.source)
        old = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        kept = {k: old[k] for k in ("status", "train_steps", "train_seconds") if k in old}
        write_extra(folder, "metrics.json", json.dumps({**metrics, **kept}, indent=2))
        written = write_checkpoint_scorecard(folder, card, evaluator, num_samples=args.num, seed=args.seed)
        print(f"updated {folder / 'metrics.json'} and {written.name} (+ .npz)", file=sys.stderr)
    return 0


def cmd_half(args: argparse.Namespace) -> int:
    from genlib.checkpoints import resolve, store_half_precision

    for source in args.sources:
        folder, _ = resolve(source)
        before, after = store_half_precision(folder)
        print(f"{folder}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (float16); rescore it with "
              f"`python -m genlib eval {source} --write`")
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    from genlib.comparison import Evaluator, references, write_shipped_references
    from genlib.evaluation import metrics_dict

    evaluator = Evaluator.load()
    cards = references(evaluator, args.seed, progress=_stderr_progress)
    print(json.dumps({card.name: metrics_dict(card) for card in cards}, indent=2))
    if args.write:
        print(f"wrote {write_shipped_references(evaluator, cards, args.seed)} (+ .npz)", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from genlib.comparison import compare
    from genlib.report import write_report

    comparison = compare(args.sources, seed=args.seed, num_samples=args.num, progress=_stderr_progress)
    for source, message in comparison.errors.items():
        print(f"error: {source}: {message}", file=sys.stderr)
    if not comparison.models:
        raise CheckpointError("none of the given checkpoints could be compared")
    out = write_report(comparison, args.out)
    print(f"wrote {out}/report.html, scoreboard.csv, scoreboard.json and {len(comparison.cards)} grids")
    return 2 if comparison.errors else 0


def cmd_steps_quality(args: argparse.Namespace) -> int:
    from genlib.checkpoints import resolve
    from genlib.diffusion_analysis import (CURVE_SAMPLERS, DEFAULT_CURVE_STEPS, load_steps_quality,
                                           save_steps_quality, steps_quality)

    folder, _ = resolve(args.source)
    request = dict(num_samples=args.num, seed=args.seed, steps_grid=args.steps or DEFAULT_CURVE_STEPS,
                   samplers=args.samplers or CURVE_SAMPLERS)
    result = load_steps_quality(folder, **request)
    if result is None:
        model, _ = load_model(folder)
        result = steps_quality(model, **request, report=_stderr_progress)
        save_steps_quality(folder, result)
    else:
        print("(from the cache)", file=sys.stderr)
    print(_steps_quality_table(result))
    if args.write:
        print(f"wrote {save_steps_quality(folder, result, into_folder=True)}", file=sys.stderr)
    return 0


def _steps_quality_table(result) -> str:
    """Fréchet distance (and seconds to draw the samples) by step count (rows) and sampler (columns)."""
    samplers = list(dict.fromkeys(p.sampler for p in result.points))
    cells = {(p.sampler, p.steps): f"{p.frechet_distance:8.2f} ({p.seconds:6.1f} s)" for p in result.points}
    width = max(len(s) for s in [*samplers, next(iter(cells.values()))])
    lines = [f"Fréchet distance (sampling time) of {result.num_samples} samples, seed {result.seed}"
             + (f", guidance {result.guidance_scale:g}" if result.guidance_scale is not None else ""),
             f"{'steps':>6s}  " + "  ".join(f"{s:>{width}s}" for s in samplers)]
    for steps in dict.fromkeys(p.steps for p in result.points):
        lines.append(f"{steps:6d}  " + "  ".join(f"{cells.get((s, steps), '-'):>{width}s}" for s in samplers))
    return "\n".join(lines)


def _stderr_progress(fraction: float, message: str) -> None:
    print(f"\r[{fraction:4.0%}] {message[:70]:70s}", end="" if fraction < 1 else "\n", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    from genlib.families.diffusion import SAMPLERS

    parser = argparse.ArgumentParser(prog="python -m genlib", description="Train, sample and score generative models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="families and available checkpoints")
    p = sub.add_parser("train", help="train FAMILY and save a checkpoint folder; "
                                     "`train FAMILY --help` lists its flags", add_help=False)
    p.add_argument("family")
    p = sub.add_parser("train-evaluator", help="train the digit classifier used for metrics")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("sample", help="write samples to an .npz file")
    p.add_argument("source", help="checkpoint name, folder or hub id")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", help="comma-separated classes for conditional models (repeated to --num)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("eval", help="print every metric of a checkpoint as JSON (cached by content)")
    p.add_argument("source", help="checkpoint name, folder or hub id")
    p.add_argument("--num", type=int, default=1000, help="samples to score (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true",
                   help="also store the scores in the checkpoint's metrics.json and its full scorecard beside it "
                        "(scorecard.json + .npz), which the Compare page then shows without scoring")
    p = sub.add_parser("half", help="store checkpoints' weights as float16 safetensors (half the size)")
    p.add_argument("sources", nargs="+", help="checkpoint names or folders")
    p = sub.add_parser("references", help="score the reference image sets (real, blurred, noisy digits, noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true", help="store them beside the evaluator (references.json + .npz)")
    p = sub.add_parser("compare", help="score checkpoints side by side and write the report folder")
    p.add_argument("sources", nargs="+", help="checkpoint names, folders or hub ids")
    p.add_argument("--out", required=True, help="report folder to write")
    p.add_argument("--num", type=int, default=1000, help="samples per model (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("steps-quality", help="Fréchet distance against sampler steps of a diffusion checkpoint "
                                             "(cached by content)")
    p.add_argument("source", help="checkpoint name, folder or hub id")
    p.add_argument("--num", type=int, default=500, help="samples per point (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", help="step counts to measure (default 5 10 20 50 100)")
    p.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), help="samplers (default ddpm ddim dpm-solver++)")
    p.add_argument("--write", action="store_true", help="also store the curve as the checkpoint's steps_quality.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if getattr(args, "num", 1) < 1 or getattr(args, "num", 1) > 100_000:
            raise ConfigError(f"--num must be between 1 and 100000, got {args.num}")
        return {"list": cmd_list, "train-evaluator": cmd_train_evaluator, "sample": cmd_sample,
                "eval": cmd_eval, "half": cmd_half, "references": cmd_references, "compare": cmd_compare,
                "steps-quality": cmd_steps_quality}[args.command](args)
    except (CheckpointError, ConfigError, UnknownFamilyError, ValueError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
