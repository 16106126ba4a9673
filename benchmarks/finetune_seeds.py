"""The shipped encoder's fine-tune against the TF-IDF baseline over several seeds, into benchmarks/finetune_seeds.md.

    python -m benchmarks.finetune_seeds            # fine-tunes bert-mini-pydoc with seeds 0, 1, 2 (~7 min each)
    python -m benchmarks.finetune_seeds --seeds 0 1 2 3 4
    python -m benchmarks.finetune_seeds --folders runs/ft-s0 runs/ft-s1
        # tabulates fine-tunes already made by `python -m genlib finetune ... --seed S`

One seed's test accuracy on 265 texts moves by a few texts from seed to seed (the new head, the
shuffling and dropout), so "beats the baseline" is judged on the mean over seeds as well as on the
seed the shipped checkpoint records. The baseline (TF-IDF + logistic regression) is deterministic.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
from pathlib import Path

from genlib.families.transformers.encoder import (SHIPPED_ENCODER, FinetuneConfig, finetune_encoder,
                                                  read_finetune_metrics)
from genlib.families.transformers.textclass import builtin_dataset

OUT = Path(__file__).with_name("finetune_seeds.md")


def run_seeds(seeds: list[int], work: Path) -> list[dict]:
    """Fine-tune the shipped encoder on the built-in set once per seed (default settings otherwise)."""
    dataset = builtin_dataset()
    results = []
    for seed in seeds:
        print(f"fine-tuning with seed {seed}", flush=True)
        result = finetune_encoder(SHIPPED_ENCODER, dataset, FinetuneConfig(seed=seed), work / f"seed{seed}")
        results.append(result.metrics)
    return results


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def report(runs: list[dict], command: str) -> str:
    """The markdown page: one row per seed, the mean ± sd, the baseline, and the verdict."""
    base = runs[0]["baseline"]
    if any(r["baseline"]["accuracy"] != base["accuracy"] for r in runs):
        raise ValueError("the runs were scored against different baselines (different data or splits)")
    acc = [r["test"]["accuracy"] for r in runs]
    f1 = [r["test"]["macro_f1"] for r in runs]
    data, config = runs[0]["dataset"], runs[0]["finetune"]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Encoder fine-tune over seeds", "", "```", command, "```", "",
             f"Written {when}. `{runs[0].get('source', SHIPPED_ENCODER)}` fine-tuned on {data['name']} "
             f"({data['train']:,} train / {data['val']:,} val / {data['test']:,} test texts, {len(data['labels'])} "
             f"classes), {config['epochs']} epochs, batch {config['batch_size']}, the epoch best on validation kept; "
             "scored on the test split.", "",
             "| seed | best epoch | test accuracy | macro-F1 | training s |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['finetune']['seed']} | {r['best_epoch']} | {r['test']['accuracy']:.3f} | "
              f"{r['test']['macro_f1']:.3f} | {r['train_seconds']:.0f} |" for r in runs]
    lines += [f"| mean ± sd | | {_mean_sd(acc)} | {_mean_sd(f1)} | |",
              f"| {base['model']} | | {base['accuracy']:.3f} | {base['macro_f1']:.3f} | |", ""]
    beaten = sum(a > base["accuracy"] and f > base["macro_f1"] for a, f in zip(acc, f1))
    mean_beats = statistics.mean(acc) > base["accuracy"] and statistics.mean(f1) > base["macro_f1"]
    lines += [f"- Seeds that beat the baseline on both accuracy and macro-F1: {beaten} of {len(runs)}.",
              f"- The mean over seeds {'beats' if mean_beats else 'does not beat'} the baseline on both: "
              f"**{'met' if mean_beats else 'MISSED'}**.", ""]
    return "\n".join(lines)


def main() -> None:
    """Run (or collect) the fine-tunes and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folders", nargs="+", type=Path, help="fine-tuned folders to tabulate instead of training")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.folders:
        runs = [read_finetune_metrics(folder) for folder in args.folders]
        seeds = " ".join(str(r["finetune"]["seed"]) for r in runs)
        command = (f"python -m genlib finetune {runs[0].get('source', SHIPPED_ENCODER)} --out FOLDER --seed S   "
                   f"# seeds {seeds}\npython -m benchmarks.finetune_seeds --folders "
                   + " ".join(str(folder) for folder in args.folders))
    else:
        with tempfile.TemporaryDirectory() as work:
            runs = run_seeds(args.seeds, Path(work))
        command = "python -m benchmarks.finetune_seeds --seeds " + " ".join(map(str, args.seeds))
    text = report(runs, command)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
