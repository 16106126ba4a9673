"""Every shipped model with a likelihood, per benchmark, beside the published full-MNIST figures.

    python -m benchmarks.likelihood [--rescore]

A measurement, not a test. For each likelihood benchmark of ``genlib.likelihood`` (8-bit digits in
bits/dim, binarized digits in nats per image) it lists the shipped checkpoints scored on it: the test
value with its kind (exact, bound, estimate) and standard error, the Fréchet distance of 1,000
samples, parameters, training time and sampling time per image, then the published references (all
trained on the 60,000 MNIST training digits; the lab trains on 4,000). The rows are the shipped
scorecards that Compare shows (``--rescore`` scores afresh) and the table goes to benchmarks/likelihood.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from genlib.checkpoints import list_checkpoints
from genlib.comparison import compare
from genlib.likelihood import BENCHMARKS, PUBLISHED, PUBLISHED_NOTE
from genlib.scoring import is_number


def _cell(value, fmt: str) -> str:
    return fmt.format(value) if is_number(value) else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rescore", action="store_true", help="score every model afresh, ignoring stored scorecards")
    parser.add_argument("--out", default=str(Path(__file__).with_name("likelihood.md")))
    args = parser.parse_args()
    os.environ["GENLIB_SCORE_CACHE"] = tempfile.mkdtemp(prefix="genlib-score-")
    shipped = {info.name: info for info in list_checkpoints() if info.origin == "shipped"}
    result = compare(list(shipped), use_cache=not args.rescore)
    sections = []
    for benchmark in BENCHMARKS.values():
        value_format = "{:.3f}" if benchmark.unit == "bits/dim" else "{:.2f}"
        rows = ["| model | family | test " + benchmark.unit + " ↓ | kind | ± std. error | Fréchet distance ↓ | "
                "parameters | train s | ms / sample |", "|---|---|---|---|---|---|---|---|---|"]
        cards = sorted((c for c in result.models if is_number(c.metrics.get(benchmark.metric))),
                       key=lambda c: c.metrics[benchmark.metric])
        for card in cards:
            m = card.metrics
            rows.append(f"| `{card.name}` | {card.family} | {value_format.format(m[benchmark.metric])} | "
                        f"{m.get('likelihood')} | {_cell(m.get('likelihood_stderr'), '{:.3g}')} | "
                        f"{_cell(m.get('frechet_distance'), '{:.1f}')} | {_cell(m.get('num_parameters'), '{:,.0f}')} | "
                        f"{_cell(shipped[card.name].metrics.get('train_seconds'), '{:.0f}')} | "
                        f"{_cell(m.get('sample_ms_per_image'), '{:.3g}')} |")
        for ref in (p for p in PUBLISHED if p.benchmark == benchmark.key):
            rows.append(f"| *{ref.model}* ({PUBLISHED_NOTE}) | published | {value_format.format(ref.value)} | "
                        f"{ref.kind} | | | | | |")
        notes = [f"- `{c.name}`: {c.metrics['likelihood_note']}" for c in cards if c.metrics.get("likelihood_note")]
        sources = sorted({f"- {ref.model}: {ref.source}" for ref in PUBLISHED if ref.benchmark == benchmark.key})
        sections.append(f"## {benchmark.title} ({benchmark.unit}): {benchmark.data}\n\n" + "\n".join(rows) +
                        "\n\n" + "\n".join(notes + sources))
    text = ("# Likelihoods of the shipped models\n\nCommand: `python -m benchmarks.likelihood`. Test values are means "
            "over the 1,000 held-out test digits, with the standard error of that mean; the two benchmarks are never "
            "mixed. Published rows are full-MNIST figures (60,000 training digits); the lab trains on 4,000.\n\n" +
            "\n\n".join(sections) + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
