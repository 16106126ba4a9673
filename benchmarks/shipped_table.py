"""Write the table of shipped checkpoints and their metrics.json into benchmarks/SHIPPED.md.

    python -m benchmarks.shipped_table

It reads what `python -m genlib train` recorded; it measures nothing itself.
"""
from __future__ import annotations

from pathlib import Path

from genlib.checkpoints import list_checkpoints

COLUMNS = [("frechet_distance", "Fréchet distance ↓", "{:.1f}"), ("nelbo_bits_per_dim", "−ELBO bits/dim ↓", "{:.4f}"),
           ("class_accuracy", "class accuracy ↑", "{:.3f}"), ("test_accuracy", "test accuracy ↑", "{:.4f}"),
           ("test_recon_mse", "test recon MSE ↓", "{:.4f}"), ("num_parameters", "parameters", "{:,}"),
           ("train_steps", "train steps", "{}"), ("train_seconds", "train s (2-core CPU)", "{:.0f}")]


def table() -> str:
    rows = ["| checkpoint | family | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
            "|---|---|" + "---|" * len(COLUMNS)]
    for info in list_checkpoints(include_evaluators=True):
        if info.origin != "shipped":
            continue
        cells = [fmt.format(info.metrics[key]) if key in info.metrics else "–" for key, _, fmt in COLUMNS]
        rows.append(f"| `{info.name}` | {info.family} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    out = Path(__file__).with_name("SHIPPED.md")
    out.write_text("# Shipped checkpoints\n\nMade by `bash scripts/train_shipped.sh`; regenerate this table with "
                   "`python -m benchmarks.shipped_table`.\n\n" + table() + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
