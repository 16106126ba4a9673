"""benchmarks/equal_time.py: a recipe pilot stops on the clock and scores the test digits on its benchmark."""
from __future__ import annotations

import json
import math
import time

from benchmarks.equal_time import pilot, write_table
from genlib import get_family


def test_a_pilot_stops_when_its_seconds_are_up_and_scores_its_own_benchmark():
    start = time.perf_counter()
    row = pilot("glow", get_family("glow").tiny_config, {"batch_size": 16, "warmup_steps": 0}, seconds=2.0)
    assert time.perf_counter() - start < 60                     # the clock, not the 1,000 epochs, ended it
    assert row["steps"] >= 1 and row["benchmark"] == "8-bit" and math.isfinite(row["test"])
    assert 0 < row["test"] < 16                                 # bits/dim of dequantized 8-bit digits
    tiny_pixelcnn = {**get_family("pixelcnn").tiny_config, "data": "binarized"}
    bits = pilot("pixelcnn", tiny_pixelcnn, {"batch_size": 8}, seconds=1.0)
    assert bits["benchmark"] == "binarized" and 0 < bits["test"] < 784 * math.log(2) * 2   # nats per image


def test_the_table_lists_each_budget_best_first(tmp_path):
    rows = [{"family": "glow", "model": {"hidden": h}, "train": {"batch_size": 16}, "seconds": 300.0, "threads": 1,
             "steps": 10 * h, "benchmark": "8-bit", "test": value, "parameters": 100 * h}
            for h, value in ((64, 1.7), (96, 1.6))]
    record = tmp_path / "record.jsonl"
    record.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_table(record, tmp_path / "table.md")
    assert "## glow, 300 s each (8-bit digits)" in text and "test bits/dim" in text
    assert text.index('{"hidden": 96}') < text.index('{"hidden": 64}')   # 1.6 before 1.7
    assert (tmp_path / "table.md").read_text() == text
