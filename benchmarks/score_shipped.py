"""Score every shipped checkpoint on equal terms and write the table into benchmarks/RESULTS.md.

    python -m benchmarks.score_shipped [--num 1000] [--seed 0]

A measurement, not a test: it runs genlib.comparison.compare (the code behind the Compare page
and `python -m genlib eval`) over every shipped generative checkpoint plus the reference image
sets, and records how long the scoring took on this machine.
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


def cell(fmt: str, value) -> str:
    return fmt.format(value) if is_number(value) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    # a fresh cache: the timing below is a cold first scoring, as on a new machine
    os.environ["GENLIB_SCORE_CACHE"] = tempfile.mkdtemp(prefix="genlib-score-")
    shipped = [info for info in list_checkpoints() if info.origin == "shipped"]
    start = time.perf_counter()
    result = compare([info.name for info in shipped], seed=args.seed, num_samples=args.num,
                     progress=lambda f, m: print(f"\r[{f:4.0%}] {m[:70]:70s}", end="", file=sys.stderr))
    seconds = time.perf_counter() - start
    print(file=sys.stderr)
    train_s = {info.name: info.metrics.get("train_seconds") for info in shipped}
    head = ["model", "family"] + [m.title for m in METRICS]
    lines = ["| " + " | ".join(head + ["train s"]) + " |", "|" + "---|" * (len(head) + 1)]
    for card in result.cards:
        cells = [f"`{card.name}`" if card.kind == "model" else f"*{card.name}*", card.family]
        cells += [cell(m.format, card.metrics.get(m.key)) for m in METRICS]
        cells.append(cell("{:.0f}", train_s.get(card.name)) if card.kind == "model" else "")
        lines.append("| " + " | ".join(cells) + " |")
    likelihood = ", ".join(f"{c.name}: {c.metrics['likelihood']}" for c in result.models if "likelihood" in c.metrics)
    text = f"""# Shipped checkpoints, scored on equal terms

Command: `python -m benchmarks.score_shipped --num {args.num} --seed {args.seed}` (the same code as the
Compare page and `python -m genlib eval`). Every model draws {args.num:,} samples from seed {args.seed};
they are compared with the 4,000 training digits in the features of the shipped digit classifier.
Rows in *italics* are reference image sets: the real held-out test digits are the floor a model that
does not copy its training data can reach.

{chr(10).join(lines)}

- bits/dim kind: {likelihood or 'none'}.
- n/a: the model has no such quantity (for example a GAN has no likelihood, an unconditional model
  no class accuracy); the Compare page shows the reason in the scoreboard.
- Cold scoring of all {len(result.models)} models and the 4 reference sets took {seconds:.1f} s on
  {platform.machine()} with {torch.get_num_threads()} torch threads ({'CUDA' if torch.cuda.is_available() else 'CPU'}).
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
