"""Score every shipped checkpoint on equal terms and write the table into benchmarks/RESULTS.md.

    python -m benchmarks.score_shipped [--num 1000] [--seed 0] [--rescore]

A measurement, not a test: it runs genlib.comparison.compare (the code behind the Compare page
and `python -m genlib eval`) over every shipped generative checkpoint plus the reference image
sets, and records how long that took on this machine. By default the models' rows are their shipped
scorecards (what Compare shows; written by `eval --write` with this evaluator, seed and sample count,
which their key checks); ``--rescore`` scores every model afresh (a cold scoring, as on a machine
without shipped scorecards) and times that.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from genlib.checkpoints import list_checkpoints
from genlib.comparison import compare
from genlib.scoring import METRICS, is_number

FORMATS = {"num_parameters": "{:,.0f}", "flops_per_sample": "{:.3g}", "frechet_distance": "{:.1f}", "kid": "{:.0f}",
           "sample_ms_per_image": "{:.3f}", "train": "{:.0f}"}


# What every shipped image model is held to (issue 16): unconditional ones draw every digit often enough,
# conditional ones draw the digit asked for.
MIN_RAREST_SHARE, MIN_ENTROPY_BITS, MIN_CLASS_ACCURACY = 0.07, 3.28, 0.95


def cell(fmt: str, value) -> str:
    return fmt.format(value) if is_number(value) else "n/a"


def rarest_share(card) -> float | None:
    """The share of samples the evaluator reads as the rarest digit (None without a class histogram)."""
    counts = card.class_counts
    return min(counts) / sum(counts) if sum(counts) else None


def coverage_lines(cards) -> list[str]:
    """One line per model: its coverage or class-accuracy target, its figures, met or MISSED."""
    lines = []
    for card in cards:
        m = card.metrics
        if is_number(m.get("class_accuracy")):
            ok = m["class_accuracy"] >= MIN_CLASS_ACCURACY
            lines.append(f"- `{card.name}`: class accuracy {m['class_accuracy']:.3f} (target ≥ {MIN_CLASS_ACCURACY}): "
                         f"{'met' if ok else '**MISSED**'}")
        elif rarest_share(card) is not None and is_number(m.get("class_entropy_bits")):
            share, bits = rarest_share(card), m["class_entropy_bits"]
            ok = share >= MIN_RAREST_SHARE and bits >= MIN_ENTROPY_BITS
            lines.append(f"- `{card.name}`: rarest digit {100 * share:.1f}%, class entropy {bits:.3f} bits (targets "
                         f"≥ {100 * MIN_RAREST_SHARE:.0f}% and ≥ {MIN_ENTROPY_BITS}): {'met' if ok else '**MISSED**'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--rescore", action="store_true", help="score every model afresh, ignoring stored scorecards")
    args = parser.parse_args()
    # a fresh cache: the timing below is a cold first scoring, as on a new machine
    os.environ["GENLIB_SCORE_CACHE"] = tempfile.mkdtemp(prefix="genlib-score-")
    shipped = [info for info in list_checkpoints() if info.origin == "shipped"]
    start = time.perf_counter()
    result = compare([info.name for info in shipped], seed=args.seed, num_samples=args.num, use_cache=not args.rescore,
                     progress=lambda f, m: print(f"\r[{f:4.0%}] {m[:70]:70s}", end="", file=sys.stderr))
    seconds = time.perf_counter() - start
    print(file=sys.stderr)
    train_s = {info.name: info.metrics.get("train_seconds") for info in shipped}
    head = ["model", "family"] + [m.title for m in METRICS]
    lines = ["| " + " | ".join(head + ["rarest digit ↑", "train s"]) + " |", "|" + "---|" * (len(head) + 2)]
    for card in result.cards:
        cells = [f"`{card.name}`" if card.kind == "model" else f"*{card.name}*", card.family]
        cells += [cell(m.format, card.metrics.get(m.key)) for m in METRICS]
        share = rarest_share(card)
        cells.append("n/a" if share is None else f"{100 * share:.1f}%")
        cells.append(cell("{:.0f}", train_s.get(card.name)) if card.kind == "model" else "")
        lines.append("| " + " | ".join(cells) + " |")
    likelihood = ", ".join(f"{c.name}: {c.metrics['likelihood']} on the {c.metrics.get('likelihood_benchmark')} digits"
                           + (f" ({c.metrics['likelihood_note']})" if c.metrics.get("likelihood_note") else "")
                           for c in result.models if "likelihood" in c.metrics)
    how = ("Scoring afresh (`--rescore`: every model samples and is scored, cold)" if args.rescore else
           "Reading the shipped scorecards (scored by `python -m genlib eval NAME --write`)")
    text = f"""# Shipped checkpoints, scored on equal terms

Command: `python -m benchmarks.score_shipped --num {args.num} --seed {args.seed}` (the same code as the
Compare page and `python -m genlib eval`). Every model draws {args.num:,} samples from seed {args.seed};
they are compared with the 4,000 training digits in the features of the shipped digit classifier.
Rows in *italics* are reference image sets: the real held-out test digits are the floor a model that
does not copy its training data can reach.

{chr(10).join(lines)}

Coverage and class accuracy (the evaluator's reading of the same samples):

{chr(10).join(coverage_lines(result.models))}

- rarest digit: the share of the samples read as the least drawn digit (10% when all are equal).
- likelihood: bits/dim of the 8-bit test digits, or nats per image of the binarized ones (binarized once,
  seed 0); never one for the other. Conditional models score p(x). Kind: {likelihood or 'none'}.
- n/a: the model has no such quantity (for example a GAN has no likelihood, an unconditional model
  no class accuracy); the Compare page shows the reason in the scoreboard.
- {how} of all {len(result.models)} models and the 4 reference sets took {seconds:.1f} s on
  {platform.machine()} with {torch.get_num_threads()} torch threads ({'CUDA' if torch.cuda.is_available() else 'CPU'}).
  ms / sample is timed when a model is scored (`eval --write`), with whatever else ran on the machine then.
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
