"""The GAN families' objectives: each adversarial loss as a pure function of D's outputs, the WGAN-GP and
R1 penalties, and the detector that stops a run once D has won outright.

Losses live in ``LOSSES[d_output][loss]``: ``d_output="logit"`` means D's last layer is linear, ``"sigmoid"``
means D outputs a probability (the textbook GAN; only bce and lsgan are defined for it). Each loss also says
how D's output reads as the logged ``d_real``/``d_fake``: a probability for bce (sigmoid of the logit), D's own
output for lsgan (it regresses to 1/0, so it estimates the same probability), and the raw critic value for
hinge and wgan-gp (unbounded, not a probability).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genlib.training import TrainingDiverged

EPS = 1e-7  # keeps log(p) finite for a sigmoid D; the textbook loss still saturates as it should
D_WIN_STEPS = 200  # the D-wins detector fires after this many consecutive steps of ...
D_WIN_REAL, D_WIN_FAKE = 0.99, 0.01  # ... D(x) above D_WIN_REAL and D(G(z)) below D_WIN_FAKE


# -- losses: pure functions of D's outputs on real (B,1) and generated (B,1) images ----------------
@dataclass(frozen=True)
class GANLoss:
    """One adversarial objective: D's loss, G's loss, and how D's output reads as a score."""

    d_loss_fn: Callable[[Tensor, Tensor], Tensor]   # (D(x), D(G(z))) -> scalar
    g_loss_fn: Callable[[Tensor], Tensor]           # D(G(z)) -> scalar
    score: Callable[[Tensor], Tensor] = lambda out: out  # D output -> the logged d_real/d_fake
    probability: bool = True          # scores are probabilities: the D-wins detector applies
    gradient_penalty: bool = False    # add gp_weight * gradient_penalty to D's loss


def _bce_logit_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # -log sigmoid(real) - log(1 - sigmoid(fake))


def _bce_logit_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()  # non-saturating: maximise log D(G(z)) instead of minimising log(1-D)


def _bce_prob_d(real: Tensor, fake: Tensor) -> Tensor:
    return -torch.log(real.clamp_min(EPS)).mean() - torch.log((1 - fake).clamp_min(EPS)).mean()


def _bce_prob_g(fake: Tensor) -> Tensor:
    return -torch.log(fake.clamp_min(EPS)).mean()


def _ls_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()


def _ls_g(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1) ** 2).mean()


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _critic_g(fake: Tensor) -> Tensor:
    return -fake.mean()


LOSSES: dict[str, dict[str, GANLoss]] = {
    "logit": {
        "bce": GANLoss(_bce_logit_d, _bce_logit_g, score=torch.sigmoid),
        "lsgan": GANLoss(_ls_d, _ls_g),
        "hinge": GANLoss(_hinge_d, _critic_g, probability=False),
        "wgan-gp": GANLoss(_wasserstein_d, _critic_g, probability=False, gradient_penalty=True),
    },
    "sigmoid": {
        "bce": GANLoss(_bce_prob_d, _bce_prob_g),
        "lsgan": GANLoss(_ls_d, _ls_g),
    },
}
LOSS_NAMES = tuple(LOSSES["logit"])
LOSS_TITLES = {"bce": "Non-saturating BCE", "lsgan": "LSGAN", "hinge": "The hinge loss", "wgan-gp": "WGAN-GP"}


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty: mean over random interpolates x̂ of (||∇D(x̂)||₂ − 1)².

    x̂ = a·real + (1−a)·fake with a ~ U(0,1) per sample (drawn on CPU from ``generator`` when
    given). The graph is kept (create_graph) so the penalty trains D.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    a = (torch.rand(shape, generator=generator) if generator is not None else torch.rand(shape)).to(real.device)
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norm = (grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt()  # the epsilon keeps sqrt differentiable at 0
    return ((norm - 1) ** 2).mean()


def r1_penalty(real_scores: Tensor, real_inputs: Tensor) -> Tensor:
    """R1 (Mescheder et al., 2018): mean over real images of ||∇ₓD(x)||², with the graph kept so it trains D.

    ``real_inputs`` (B,...) must require grad and ``real_scores`` (B,1) must be D's output on them.
    """
    (grad,) = torch.autograd.grad(real_scores.float().sum(), real_inputs, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1).mean()


class DWinDetector:
    """Raises TrainingDiverged once D has won outright for ``D_WIN_STEPS`` steps in a row."""

    def __init__(self, steps: int = D_WIN_STEPS):
        self.steps, self.count = steps, 0

    def reset(self) -> None:
        """Forget the count (a new fit starts)."""
        self.count = 0

    def update(self, d_real: float, d_fake: float) -> None:
        """Count one step's mean D(x) and D(G(z)) (probabilities); raise when D has won too long."""
        self.count = self.count + 1 if d_real > D_WIN_REAL and d_fake < D_WIN_FAKE else 0
        if self.count >= self.steps:
            raise TrainingDiverged(
                f"the discriminator has won outright for {self.steps} steps (D(x)≈1, D(G(z))≈0); the generator "
                "gets no gradient. Try a lower D learning rate (d_lr_scale), spectral_norm, or the hinge/wgan-gp loss")
