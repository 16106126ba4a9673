"""Recipe pilots at equal wall time: which settings learn a likelihood model fastest on this CPU.

    python -m benchmarks.equal_time FAMILY MODEL_JSON TRAIN_JSON [--seconds 300] [--threads 1]
    python -m benchmarks.equal_time --table        # rewrite equal_time.md from the recorded pilots

A measurement, not a test. One pilot trains FAMILY (model settings MODEL_JSON, TrainConfig overrides
TRAIN_JSON) on the 4,000 training digits for a fixed number of wall-clock seconds at a constant learning
rate after warm-up, then scores the 1,000 test digits on its likelihood benchmark (bits/dim for 8-bit
digits, nats for binarized ones; one fixed dequantization, seed 0). Comparing pilots at the same seconds
rather than the same steps is the point: a recipe that takes cheaper steps (bf16 autocast, a smaller
batch) gets more of them, and the table says whether that pays. Each pilot is appended to
``equal_time.jsonl``; ``--table`` turns that record into ``equal_time.md``. Short pilots rank recipes for
a short budget: the shipped run then trains the winner for its full budget with a cosine decay.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
RECORD = HERE / "equal_time.jsonl"
TABLE = HERE / "equal_time.md"


def pilot(family: str, model_settings: dict, train_settings: dict, seconds: float) -> dict:
    """Train for ``seconds`` of wall time, then the test likelihood: a dict for one row of the table."""
    from genlib.config import TrainConfig
    from genlib.data import mnist
    from genlib.likelihood import BINARIZED, benchmark_data
    from genlib.registry import get_family
    from genlib.training import Trainer, TrainingCancelled

    cls = get_family(family)
    model = cls(cls.Config(**model_settings))
    config = TrainConfig(**{"epochs": 1000, "max_steps": 0, "device": "cpu", **train_settings})  # the clock stops it
    cancel, start, last = threading.Event(), time.perf_counter(), {"step": 0}

    def stop_when_time_is_up(progress, _model) -> None:
        last["step"] = progress.step
        if time.perf_counter() - start > seconds:
            cancel.set()

    split = mnist()
    try:
        Trainer(config, [stop_when_time_is_up], cancel).fit(model, split.train_images, split.train_labels)
    except TrainingCancelled:
        pass
    model.eval()
    benchmark = model.likelihood_benchmark()
    x = benchmark_data(benchmark, split.test_images)
    with torch.no_grad():
        bpd = torch.cat([model.bits_per_dim(x[i:i + 250], generator=torch.Generator().manual_seed(0))
                         for i in range(0, len(x), 250)]).mean().item()
    value = bpd * x[0].numel() * math.log(2) if benchmark == BINARIZED.key else bpd
    return {"family": family, "model": model_settings, "train": train_settings, "seconds": seconds,
            "threads": torch.get_num_threads(), "steps": last["step"], "benchmark": benchmark,
            "test": round(value, 4), "parameters": sum(p.numel() for p in model.parameters())}


def write_table(record: Path = RECORD, out: Path = TABLE) -> str:
    """equal_time.md from the recorded pilots, grouped by family and budget, best first."""
    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    lines = ["# Recipe pilots at equal wall time", "",
             "Command: `python -m benchmarks.equal_time FAMILY MODEL_JSON TRAIN_JSON --seconds S` per row, then "
             "`python -m benchmarks.equal_time --table`. Each pilot trains on the 4,000 training digits for S seconds "
             "of wall time on the stated torch threads (two pilots ran side by side on the 2-core CPU), at a constant "
             "learning rate after warm-up, and is scored on the 1,000 test digits. Lower is better.", ""]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["family"], row["seconds"], row["benchmark"]), []).append(row)
    for (family, seconds, benchmark), group in groups.items():
        unit = "nats" if benchmark == "binarized" else "bits/dim"
        lines += [f"## {family}, {seconds:g} s each ({benchmark} digits)", "",
                  f"| model settings | training settings | threads | steps in {seconds:g} s | test {unit} ↓ "
                  "| parameters |",
                  "|---|---|---|---|---|---|"]
        for row in sorted(group, key=lambda r: r["test"]):
            lines.append(f"| `{json.dumps(row['model'])}` | `{json.dumps(row['train'])}` | {row['threads']} | "
                         f"{row['steps']:,} | {row['test']:.3f} | {row['parameters']:,} |")
        lines.append("")
    text = "\n".join(lines)
    out.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", nargs="?")
    parser.add_argument("model", nargs="?", default="{}", help="model settings as JSON")
    parser.add_argument("train", nargs="?", default="{}", help="TrainConfig overrides as JSON")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--table", action="store_true", help="only rewrite equal_time.md from the record")
    args = parser.parse_args()
    if not args.table:
        if not args.family:
            parser.error("name a family, or pass --table")
        torch.set_num_threads(args.threads)
        row = pilot(args.family, json.loads(args.model), json.loads(args.train), args.seconds)
        print(json.dumps(row))
        with RECORD.open("a") as f:
            f.write(json.dumps(row) + "\n")
    print(write_table())


if __name__ == "__main__":
    main()
