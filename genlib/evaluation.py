"""The numbers that go into a run's metrics.json: ``genlib.scoring.score_model``, flattened.

Training, the CLI and the Compare page all score through genlib.scoring, so a run's
metrics.json, ``python -m genlib eval`` and the scoreboard agree for the same checkpoint.
"""
from __future__ import annotations

from typing import Any

from genlib.evaluator import EVALUATOR_NAME, DigitClassifier, load_classifier
from genlib.model import GenerativeModel
from genlib.scoring import NUM_EVAL_SAMPLES, ProgressFn, Scorecard, reference_data, score_model


def metrics_dict(card: Scorecard) -> dict[str, Any]:
    """A scorecard as metrics.json holds it: the values, plus "n/a" reasons under ``missing``."""
    return {**card.metrics, "evaluator": EVALUATOR_NAME, "missing": dict(card.missing)}


def evaluate(model: GenerativeModel, *, classifier: DigitClassifier | None = None,
             num_samples: int = NUM_EVAL_SAMPLES, seed: int = 0,
             progress: ProgressFn | None = None) -> dict[str, Any]:
    """Score ``model`` against the training digits with the shipped evaluator (see genlib.scoring)."""
    ref = reference_data(classifier or load_classifier())
    return metrics_dict(score_model(model, model.family, ref, num_samples=num_samples, seed=seed, progress=progress))
