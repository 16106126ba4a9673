"""benchmarks/coverage.py: the rarest digit over several seeds of samples, read by the shipped classifier."""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks.coverage import SAMPLES_PER_SEED, SeedCounts, count_digits, report
from genlib.checkpoints import load_model
from genlib.evaluator import load_classifier
from genlib.scoring import draw_samples


def test_the_first_seed_counts_the_scorecards_own_samples_and_seeds_add_up():
    model, _ = load_model("vae-2d-mnist")  # a trained model: an untrained one draws blobs all read as one digit
    classifier = load_classifier().eval()
    result = count_digits("tiny", model, classifier, seeds=2)
    assert result.counts.shape == (2, 10) and result.total.sum().item() == 2 * SAMPLES_PER_SEED
    seed0, _, _ = draw_samples(model, SAMPLES_PER_SEED, 0)  # what the scorecard reads
    assert result.counts[0].tolist() == torch.bincount(classifier.predict(seed0), minlength=10).tolist()
    assert result.counts[0].tolist() != result.counts[1].tolist()  # seed 1 draws other samples


def test_the_pooled_share_its_error_and_the_verdict():
    even = torch.full((10,), 100)
    short = torch.tensor([60, 104, 104, 104, 104, 104, 105, 105, 105, 105])  # digit 0 at 6%
    result = SeedCounts("m", torch.stack([even, short]), 1.0)
    assert result.rarest_share == 160 / 2000
    assert math.isclose(result.rarest_stderr, math.sqrt(0.08 * 0.92 / 2000))
    assert result.per_seed_rarest() == pytest.approx([0.1, 0.06])
    row = report([result]).splitlines()[-1]
    assert "0: 8.00% ± 0.61%" in row and "6.0% – 10.0%" in row and "| met |" in row
    collapsed = SeedCounts("c", torch.tensor([[0, 200, 100, 100, 100, 100, 100, 100, 100, 100]]), 1.0)
    assert "**MISSED**" in report([collapsed]).splitlines()[-1]
