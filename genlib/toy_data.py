"""Named 2-D distributions for the toy models that draw points instead of images: the 2-D GAN
(``genlib.families.gan.toy2d``) and the continuous normalizing flow (``genlib.families.flows.cnf2d``).

Each is ``(n, generator) -> points (n,2)``; every draw comes from the generator passed in, so the same
seed gives the same points and nothing touches torch's global random state.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

GAUSSIAN_MEAN = (1.0, -0.5)  # the "gaussian" distribution: a known target for tests and newcomers
GAUSSIAN_STD = 0.5


def _ring(n: int, g: torch.Generator) -> Tensor:
    angle = torch.randint(0, 8, (n,), generator=g) * (2 * math.pi / 8)
    return 2.0 * torch.stack([angle.cos(), angle.sin()], 1) + 0.1 * torch.randn((n, 2), generator=g)


def _grid(n: int, g: torch.Generator) -> Tensor:
    centres = torch.randint(-2, 3, (n, 2), generator=g).float()
    return centres + 0.05 * torch.randn((n, 2), generator=g)


def _moons(n: int, g: torch.Generator) -> Tensor:
    from sklearn.datasets import make_moons

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    x, _ = make_moons(n_samples=n, noise=0.05, random_state=seed)
    return (torch.from_numpy(x).float() - torch.tensor([0.5, 0.25])) * 1.5


def _spiral(n: int, g: torch.Generator) -> Tensor:
    t = 3 * math.pi * torch.rand(n, generator=g).sqrt()  # sqrt: even density along the arm
    r = 0.3 + 1.7 * t / (3 * math.pi)
    return torch.stack([r * t.cos(), r * t.sin()], 1) + 0.05 * torch.randn((n, 2), generator=g)


def _gaussian(n: int, g: torch.Generator) -> Tensor:
    return torch.tensor(GAUSSIAN_MEAN) + GAUSSIAN_STD * torch.randn((n, 2), generator=g)


DISTRIBUTIONS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "ring": _ring,          # 8 Gaussians on a circle of radius 2
    "grid": _grid,          # 5x5 Gaussians at the integer points of [-2,2]^2
    "moons": _moons,        # scikit-learn's two moons, centred
    "spiral": _spiral,      # one arm, 1.5 turns
    "gaussian": _gaussian,  # N(GAUSSIAN_MEAN, GAUSSIAN_STD^2 I)
}


def sample_distribution(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points (n,2) float32 from the distribution ``name`` (see ``DISTRIBUTIONS``)."""
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r}; known: {', '.join(DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name](n, generator if generator is not None else torch.Generator().manual_seed(0)).float()


def init_linear_(net: nn.Module, g: torch.Generator) -> None:
    """PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from ``g``, so a toy
    model's weights follow its seed without touching torch's global random state."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=g)
                m.bias.uniform_(-bound, bound, generator=g)
