"""The diffusion family's CLI subcommand: ``python -m genlib steps-quality SOURCE``, Fréchet distance
against sampler steps (cached by the checkpoint's content)."""
from __future__ import annotations

import argparse
import sys

from genlib.checkpoints import load_model, resolve
from genlib.cli import Command, stderr_progress
from genlib.families.diffusion.analysis import (CURVE_SAMPLERS, DEFAULT_CURVE_STEPS, StepsQuality, load_steps_quality,
                                                save_steps_quality, steps_quality)
from genlib.families.diffusion.config import SAMPLERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``steps-quality``."""
    p.add_argument("source", help="checkpoint name, folder or hub id")
    p.add_argument("--num", type=int, default=500, help="samples per point (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", help="step counts to measure (default 5 10 20 50 100)")
    p.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), help="samplers (default ddpm ddim dpm-solver++)")
    p.add_argument("--write", action="store_true", help="also store the curve as the checkpoint's steps_quality.json")


def run(args: argparse.Namespace) -> int:
    """Measure (or read from the cache) the curve, print it as a table, and with --write store it in the folder."""
    folder, _ = resolve(args.source)
    request = dict(num_samples=args.num, seed=args.seed, steps_grid=args.steps or DEFAULT_CURVE_STEPS,
                   samplers=args.samplers or CURVE_SAMPLERS)
    result = load_steps_quality(folder, **request)
    if result is None:
        model, _ = load_model(folder)
        result = steps_quality(model, **request, report=stderr_progress)
        save_steps_quality(folder, result)
    else:
        print("(from the cache)", file=sys.stderr)
    print(steps_quality_table(result))
    if args.write:
        print(f"wrote {save_steps_quality(folder, result, into_folder=True)}", file=sys.stderr)
    return 0


def steps_quality_table(result: StepsQuality) -> str:
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


COMMANDS = (Command("steps-quality", "Fréchet distance against sampler steps of a diffusion checkpoint "
                                     "(cached by content)", add_arguments, run),)
