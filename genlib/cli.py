"""``python -m genlib list | train | train-evaluator | sample | eval | half | references | compare``,
plus the subcommands family packages offer (``COMMANDS``; diffusion adds ``steps-quality``).

Model and training flags for ``train`` are generated from the family's config dataclass, and the
sampling flags of ``sample`` from its ``Sampling`` options, so every setting the app shows is also
a flag here (``--latent-dim 16 --beta 0.5``, ``--sampler ddpm --steps 100``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from genlib.checkpoints import CheckpointError, list_checkpoints, load_model, shown
from genlib.config import Config, ConfigError, TrainConfig
from genlib.registry import UnknownFamilyError, all_families, get_family
from genlib.runs import samples_text
from genlib.training import TrainingDiverged, pick_device


@dataclass(frozen=True)
class Command:
    """A subcommand a family package adds to ``python -m genlib`` (listed in its ``COMMANDS``)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def family_commands() -> dict[str, Command]:
    """Every family package's subcommands, by name."""
    from genlib.families import PACKAGES

    return {cmd.name: cmd for package in PACKAGES.values() for cmd in getattr(package, "COMMANDS", ())}


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
    rows = [(name, cls.description, ", ".join(sorted(cls.abilities)) or "-") for name, cls in all_families().items()]
    print("\n".join("  " + line for line in _table(("family", "description", "abilities"), rows)))
    print("checkpoints:")
    rows = [(info.name, info.family, info.origin, _number(info.metrics.get("frechet_distance")),
             _number(info.metrics.get("test_accuracy")), str(info.path))
            for info in list_checkpoints(include_evaluators=True)]
    print("\n".join("  " + line for line in _table(("name", "family", "origin", "FD ↓", "accuracy", "path"),
                                                     rows, right=(3, 4))))
    return 0


def train_settings(family: str, argv: Sequence[str]) -> tuple[str, Config, TrainConfig]:
    """The folder, model config and training config that ``python -m genlib train FAMILY *argv`` would use.

    Raises SystemExit (argparse's usage message) on an unknown flag, ConfigError on a bad value.
    """
    cls = get_family(family)
    # --out lives here, not on the `train` subcommand, so `train FAMILY --help` works without it.
    parser = argparse.ArgumentParser(prog=f"python -m genlib train {family}")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    _add_config_flags(parser, cls.Config, f"{family} model")
    _add_config_flags(parser, TrainConfig, "training")
    opts = parser.parse_args(argv)
    return opts.out, cls.Config.from_dict(_picked(opts, cls.Config)), TrainConfig.from_dict(_picked(opts, TrainConfig))


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Train a fresh model of ``args.family`` with flags generated from its config, and save the folder."""
    from genlib.runs import train_run

    out, model_config, train = train_settings(args.family, extra)
    try:
        pick_device(train.device)  # refuse --device cuda without a GPU now, as a one-line error
    except RuntimeError as err:
        raise ConfigError(str(err)) from None

    def report(progress, _model):
        if progress.step % 50 == 0 or progress.step == progress.total_steps:
            scalars = " ".join(f"{k}={v:.4g}" for k, v in progress.scalars.items())
            print(f"step {progress.step}/{progress.total_steps} epoch {progress.epoch} {scalars} "
                  f"eta {progress.eta_s:.0f}s", flush=True)

    train_run(args.family, model_config, train, out, callbacks=[report], log=print)
    return 0


def cmd_train_evaluator(args: argparse.Namespace) -> int:
    """Train the digit classifier that scores every model, and save it to ``--out``."""
    from genlib.evaluator import main_train

    main_train(args.out, epochs=args.epochs, seed=args.seed)
    return 0


def cmd_sample(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Draw ``--num`` samples with the family's sampling flags and write them (and labels) to an .npz file."""
    model, info = load_model(args.source)
    # --out lives here, so `sample SOURCE --help` works without it and lists the family's own flags.
    parser = argparse.ArgumentParser(prog=f"python -m genlib sample {args.source}")
    parser.add_argument("--out", required=True, help=".npz file to write (a text model writes text: F.txt)")
    _add_config_flags(parser, model.Sampling, f"{info.family} sampling (defaults: this checkpoint's)")
    opts = parser.parse_args(extra)
    options = model.sampling_defaults().replace(**_picked(opts, model.Sampling))
    gen = torch.Generator().manual_seed(args.seed)
    if args.num is None:
        args.num = 1 if model.trained_data().tokens else 64
    labels = None
    if model.conditional:
        if args.labels:
            labels = torch.tensor([int(v) for v in args.labels.split(",")])
            if labels.numel() != args.num:
                labels = labels.repeat(-(-args.num // labels.numel()))[: args.num]
    elif args.labels:
        raise ConfigError(f"{info.name} is unconditional; --labels does not apply")
    images = model.draw(args.num, options, generator=gen, labels=model.check_labels(labels, args.num))
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if model.trained_data().tokens:  # text: the samples as text, one after another (samples_text's layout)
        out.write_text(samples_text(model, images) if args.num > 1 else model.decode_text(images[0]),
                       encoding="utf-8")
        print(f"wrote {args.num} text sample(s), {images.shape[1]} tokens each, to {out}")
        return 0
    images = images.float().cpu().numpy()
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]  # (N,H,W) for one channel
    arrays = {"images": images.astype(np.float32)}
    if model.conditional:
        arrays["labels"] = model.check_labels(labels, args.num).cpu().numpy().astype(np.int64)
    np.savez(out, **arrays)
    print(f"wrote {images.shape[0]} samples {tuple(images.shape)} to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a checkpoint with the shipped evaluator and print every metric as JSON (``--write`` stores them)."""
    from genlib.checkpoints import read_info, resolve, write_extra
    from genlib.comparison import Evaluator, score_checkpoint, write_checkpoint_scorecard
    from genlib.evaluation import metrics_dict
    from genlib.runs import refresh_card_metrics

    folder, origin = resolve(args.source)  # a bad source fails here, in milliseconds, before the evaluator loads
    info = read_info(folder, origin)
    if get_family(info.family).data_kind.tokens:  # text is measured on its own held-out split, not by the evaluator
        model, _ = load_model(args.source)
        print(json.dumps(model.held_out_metrics(), indent=2))
        return 0
    evaluator = Evaluator.load()
    card = score_checkpoint(args.source if origin == "hub" else folder, evaluator, num_samples=args.num,
                            seed=args.seed, progress=stderr_progress)
    metrics = metrics_dict(card)
    print(json.dumps(metrics, indent=2))
    if args.write:
        old = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        kept = {k: old[k] for k in ("status", "train_steps", "train_seconds") if k in old}
        write_extra(folder, "metrics.json", json.dumps({**metrics, **kept}, indent=2))
        if (folder / "README.md").is_file():
            model_card = (folder / "README.md").read_text(encoding="utf-8")
            write_extra(folder, "README.md", refresh_card_metrics(model_card, {**metrics, **kept}))
        written = write_checkpoint_scorecard(folder, card, evaluator, num_samples=args.num, seed=args.seed)
        print(f"updated {folder / 'metrics.json'} and {written.name} (+ .npz)", file=sys.stderr)
    return 0


def cmd_half(args: argparse.Namespace) -> int:
    """Store checkpoints' weights as float16 safetensors."""
    from genlib.checkpoints import resolve, store_half_precision

    for source in args.sources:
        folder, _ = resolve(source)
        before, after = store_half_precision(folder)
        print(f"{folder}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (float16); rescore it with "
              f"`python -m genlib eval {source} --write`")
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    """Score the reference image sets (real, blurred and noisy digits, noise) and print them as JSON."""
    from genlib.comparison import Evaluator, references, write_shipped_references
    from genlib.evaluation import metrics_dict

    evaluator = Evaluator.load()
    cards = references(evaluator, args.seed, progress=stderr_progress)
    print(json.dumps({card.name: metrics_dict(card) for card in cards}, indent=2))
    if args.write:
        print(f"wrote {write_shipped_references(evaluator, cards, args.seed)} (+ .npz)", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Score checkpoints side by side and write the report folder; exit 2 if any could not be compared."""
    from genlib.checkpoints import resolve
    from genlib.comparison import compare
    from genlib.report import write_report

    refused = {}
    for source in args.sources:  # when no source can be found, say so before the evaluator loads (seconds)
        try:
            resolve(source)
        except CheckpointError as err:
            refused[source] = str(err)
    if len(refused) == len(args.sources):
        for source, message in refused.items():
            print(f"error: {source}: {message}", file=sys.stderr)
        raise CheckpointError("none of the given checkpoints could be compared")
    comparison = compare(args.sources, seed=args.seed, num_samples=args.num, progress=stderr_progress)
    for source, message in comparison.errors.items():
        print(f"error: {source}: {message}", file=sys.stderr)
    if not comparison.models:
        raise CheckpointError("none of the given checkpoints could be compared")
    out = write_report(comparison, args.out)
    print(f"wrote {out}/report.html, scoreboard.csv, scoreboard.json and {len(comparison.cards)} grids")
    return 2 if comparison.errors else 0


def stderr_progress(fraction: float, message: str) -> None:
    """A progress callback that redraws one line on stderr."""
    print(f"\r[{fraction:4.0%}] {message[:70]:70s}", end="" if fraction < 1 else "\n", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, the family packages' included."""
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
    p = sub.add_parser("sample", help="write samples to an .npz file; `sample SOURCE --help` lists the family's "
                                      "sampling flags", add_help=False)
    p.add_argument("source", help="checkpoint name, folder or hub id")
    p.add_argument("--num", type=int, default=None, help="samples to draw (default 64 images, or 1 text)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", help="comma-separated classes for conditional models (repeated to --num)")
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
    for command in family_commands().values():
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 with a one-line message for any error a user can fix."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, extra)
        if args.command == "sample":
            _check_num(args)
            return cmd_sample(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        _check_num(args)
        commands = {"list": cmd_list, "train-evaluator": cmd_train_evaluator, "eval": cmd_eval, "half": cmd_half,
                    "references": cmd_references, "compare": cmd_compare}
        commands.update({name: command.run for name, command in family_commands().items()})
        return commands[args.command](args)
    except (CheckpointError, ConfigError, UnknownFamilyError, ValueError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output that cannot be written (/proc, a read-only or full disk, no such folder)
        where = f" ({shown(str(err.filename))})" if err.filename else ""
        print(f"error: {(err.strerror or 'input or output failed').lower()}{where}", file=sys.stderr)
        return 2


def _check_num(args: argparse.Namespace) -> None:
    num = vars(args).get("num")
    if num is not None and not 1 <= num <= 100_000:
        raise ConfigError(f"--num must be between 1 and 100000, got {num}")
