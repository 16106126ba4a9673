"""Looking inside a trained RBM: its filters, Gibbs chains as frames (from noise or from a digit), the
free energy of digits against faces and noise, and its hidden units as features for a classifier,
against scikit-learn's BernoulliRBM with the same number of hidden units.

Pure torch / numpy / scikit-learn, no Streamlit: the Boltzmann machines page calls these and only draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from genlib.families.boltzmann.model import RBM
from genlib.likelihood import binarize
from genlib.outliers import score_sources


def filters(model: RBM, count: int = 64) -> Tensor:
    """The first ``count`` hidden units' weights as images (count,1,28,28), each scaled to [0,1]."""
    w = model.weight.detach()[:count].cpu().view(-1, 1, 28, 28)
    lo = w.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (w - lo) / (hi - lo).clamp(min=1e-8)


@torch.no_grad()
def gibbs_frames(model: RBM, start: Tensor, steps: int, frames: int = 50,
                 seed: int = 0) -> tuple[list[Tensor], list[int]]:
    """A Gibbs chain from ``start`` (N,1,28,28) bits: (p(v | h) (N,1,28,28) at about ``frames`` evenly spaced
    steps, the start first; the number of steps done at each)."""
    gen = torch.Generator().manual_seed(seed)
    v = start.flatten(1).to(model.device)
    shown, done_at = [start.cpu()], [0]
    every = max(1, steps // max(1, frames - 1))
    done = 0
    while done < steps:
        chunk = min(every, steps - done)
        v, probs = model.gibbs(v, chunk, gen)
        done += chunk
        shown.append(probs.view(-1, 1, 28, 28).cpu())
        done_at.append(done)
    return shown, done_at


@torch.no_grad()
def free_energy_table(model: RBM, digits: Tensor, faces: Tensor, noise: Tensor) -> pd.DataFrame:
    """F(v) per image of test digits, faces and noise, each binarized once (columns score and source):
    lower free energy means more probable, with no need for Z."""
    return score_sources(lambda images: model.free_energy(binarize(images).to(model.device)).cpu(),
                         digits, faces, noise)


@dataclass
class FeatureScores:
    """Test accuracy of a logistic regression on each model's hidden-unit probabilities."""

    lab_rbm: float
    sklearn_rbm: float
    raw_pixels: float
    hidden: int


def feature_accuracy(model: RBM, train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor,
                     seed: int = 0) -> FeatureScores:
    """scikit-learn's RBM pipeline example, run on the digits: a BernoulliRBM with as many hidden units as
    ``model`` (learning rate 0.06, 20 iterations), its features into a logistic regression (C = 6000), against
    the same logistic regression on this RBM's features p(h | v) and on the raw pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import BernoulliRBM

    x_train, x_test = train.flatten(1).numpy(), test.flatten(1).numpy()
    y_train, y_test = train_labels.numpy(), test_labels.numpy()

    def accuracy(f_train, f_test) -> float:
        clf = LogisticRegression(C=6000.0, max_iter=2000)
        return float(clf.fit(f_train, y_train).score(f_test, y_test))

    with torch.no_grad():
        ours = [model.hidden_probs(t.to(model.device)).cpu().numpy() for t in (train, test)]
    baseline = BernoulliRBM(n_components=model.config.hidden, learning_rate=0.06, n_iter=20, random_state=seed)
    baseline.fit(x_train)
    return FeatureScores(accuracy(*ours), accuracy(baseline.transform(x_train), baseline.transform(x_test)),
                         accuracy(x_train, x_test), model.config.hidden)
