"""Digits against non-digits: the image sets an out-of-distribution check scores, and the AUROC of
a per-image score that should be higher for what a digit model never saw.

Any family can use it with its own score: an autoencoder's reconstruction error, a flow's exact
bits/dim. The sets are the held-out test digits, faces from scikit-image's LFW subset, and uniform
noise, each (N,1,28,28) in [0,1].
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
from torch import Tensor

SOURCE_DIGITS = "digits (test)"
SOURCE_FACES = "faces (LFW)"
SOURCE_NOISE = "uniform noise"
SOURCE_COLORS = {SOURCE_DIGITS: "#4f46e5", SOURCE_FACES: "#f59e0b", SOURCE_NOISE: "#ef4444"}


def score_sources(score: Callable[[Tensor], Tensor], digits: Tensor, faces: Tensor, noise: Tensor) -> pd.DataFrame:
    """``score(images) -> (N,)`` for each set: a DataFrame with columns score and source (a SOURCE_* name)."""
    frames = [pd.DataFrame({"score": score(images.float().cpu()).detach().cpu().numpy(), "source": source})
              for images, source in ((digits, SOURCE_DIGITS), (faces, SOURCE_FACES), (noise, SOURCE_NOISE))]
    return pd.concat(frames, ignore_index=True)


def auroc(scores: pd.DataFrame) -> float:
    """Area under the ROC curve for telling digits (negatives) from everything else by score.

    1.0: every non-digit scores higher than every digit; 0.5: no better than chance.
    """
    from sklearn.metrics import roc_auc_score

    is_outlier = (scores["source"] != SOURCE_DIGITS).to_numpy()
    if is_outlier.all() or not is_outlier.any():
        raise ValueError("AUROC needs both digits and non-digits")
    return float(roc_auc_score(is_outlier, scores["score"].to_numpy()))
