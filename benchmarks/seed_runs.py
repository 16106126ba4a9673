"""A shipped checkpoint's recipe at several seeds, so a reference comparison reports seed-to-seed spread
rather than one lucky seed.

The recipe is the shipped folder's own config.json (model settings and TrainConfig). For the shipped
seed the shipped folder itself is used; every other seed is trained here with ``genlib.runs.train_run``
into ``WORK/<name>-seed<N>`` and stored as float16 like the shipped weights. A folder already there with
the same recipe is reused, so a rerun of a benchmark costs only the scoring.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from genlib import TrainConfig
from genlib.checkpoints import resolve, store_half_precision
from genlib.runs import train_run

DEFAULT_WORK = Path("runs") / "benchmark-seeds"


def recipe_runs(shipped: str, seeds: Sequence[int], work: Path = DEFAULT_WORK,
                log: Callable[[str], None] = print) -> list[tuple[int, Path]]:
    """(seed, folder) for each seed: the shipped folder for its own seed, else a run of its recipe."""
    folder, _ = resolve(shipped)
    config = json.loads((folder / "config.json").read_text())
    train = TrainConfig.from_dict(config["train"])
    runs = []
    for seed in seeds:
        if seed == train.seed:
            runs.append((seed, folder))
            continue
        out = work / f"{folder.name}-seed{seed}"
        wanted = {"model": config["model"], "train": replace(train, seed=seed).to_dict()}
        if (out / "config.json").is_file():
            have = json.loads((out / "config.json").read_text())
            if {"model": have.get("model"), "train": have.get("train")} == wanted:
                log(f"{out}: reusing the seed-{seed} run of {folder.name}'s recipe")
                runs.append((seed, out))
                continue
        log(f"{out}: training {folder.name}'s recipe with seed {seed}")
        train_run(config["family"], config["model"], replace(train, seed=seed), out, log=log)
        store_half_precision(out)
        runs.append((seed, out))
    return runs


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def reduction_summary(what: str, reference: Sequence[float], ours: Sequence[float], seeds: Sequence[int],
                      target: float) -> str:
    """One paragraph: both means ± std, the mean reduction, the worst seed of ours against the best of the
    reference, and whether that worst case is at least ``target`` (a fraction) below: met or MISSED."""
    (ref_mean, ref_std), (our_mean, our_std) = mean_std(reference), mean_std(ours)
    worst = 1 - max(ours) / min(reference)
    verdict = "met" if worst >= target else "MISSED"
    return (f"Over seeds {', '.join(map(str, seeds))}: the reference's FD {ref_mean:.1f} ± {ref_std:.1f}, {what} "
            f"{our_mean:.1f} ± {our_std:.1f}: {_relative(1 - our_mean / ref_mean)} on average, and its worst seed "
            f"{_relative(worst)} than the reference's best. Target: at least {100 * target:.0f}% lower, worst seed "
            f"against best: **{verdict}**.")


def _relative(reduction: float) -> str:
    return f"{100 * reduction:.1f}% lower" if reduction >= 0 else f"{-100 * reduction:.1f}% higher"
