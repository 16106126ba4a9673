"""Looking inside trained flows: samples at a temperature, each scale's latent beside its digit,
interpolation in z, and the exact bits/dim of digits against faces and noise.

Pure torch / pandas, no Streamlit: the Normalizing flows page calls these and only draws. Every
function takes a flow in eval mode and returns CPU tensors or DataFrames; images are (N,1,28,28) in [0,1].
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from genlib.families.flows.model import NormalizingFlow
from genlib.outliers import score_sources

BATCH = 250


@torch.no_grad()
def sample_grid(model: NormalizingFlow, seed: int, n: int = 64, temperature: float = 1.0) -> Tensor:
    """``n`` samples (n,1,28,28) from ``seed`` with the latents' noise scaled by ``temperature``."""
    return model.sample(n, generator=torch.Generator().manual_seed(seed), temperature=temperature).cpu()


@dataclass
class ScaleView:
    """One scale's latent of some digits, laid out to be looked at."""

    title: str
    images: Tensor     # (N*C, 1, h, w): every channel of every digit, standardised to [0,1] for display
    nrow: int          # channels per digit: one row of the grid per digit
    std: float         # the latent's standard deviation over these digits (about 1 when it fits N(0, I))


def _display(z: Tensor) -> Tensor:
    """Latents to [0,1] for display: -3 std .. +3 std mapped linearly, clipped."""
    return ((z / 3 + 1) / 2).clamp(0, 1)


@torch.no_grad()
def scale_views(model: NormalizingFlow, x: Tensor) -> list[ScaleView]:
    """Each scale's latent of digits x (N,1,28,28), outermost first. A (C,h,w) latent shows as C small
    images per digit; NICE's flat latent (784,) as one 28x28 image."""
    views = []
    for i, z in enumerate(model.latents(x.to(model.device))):
        z = z.cpu()
        if z.dim() == 2:  # flat (N,784)
            views.append(ScaleView("z (784 numbers, one per pixel)", _display(z.view(-1, 1, 28, 28)), 1,
                                   z.std().item()))
            continue
        n, c, h, w = z.shape
        last = i == len(model.latent_shapes) - 1
        title = f"z{i + 1}: {c}x{h}x{w}" + (" (the last scale)" if last else " (factored out here)")
        views.append(ScaleView(title, _display(z.reshape(n * c, 1, h, w)), c, z.std().item()))
    return views


@torch.no_grad()
def interpolate(model: NormalizingFlow, x_a: Tensor, x_b: Tensor, steps: int = 10) -> Tensor:
    """Digits (steps,1,28,28) decoded from a straight line between the latents of x_a and x_b."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    z = model.encode(torch.cat([x_a.view(1, 1, 28, 28), x_b.view(1, 1, 28, 28)]).to(model.device))
    t = torch.linspace(0, 1, steps, device=z.device).view(-1, 1)
    return model.decode((1 - t) * z[:1] + t * z[1:]).cpu()


@torch.no_grad()
def bits_per_dim_of(model: NormalizingFlow, images: Tensor, seed: int = 0) -> Tensor:
    """The exact bits/dim (N,) of images (N,1,28,28), read as 8-bit, one dequantization from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([model.bits_per_dim(part.to(model.device), generator=gen).cpu()
                      for part in images.split(BATCH)])


def bits_per_dim_table(model: NormalizingFlow, digits: Tensor, faces: Tensor, noise: Tensor) -> pd.DataFrame:
    """Exact bits/dim per image of test digits, faces and noise: columns score and source
    (``genlib.outliers``), so the page can draw their histograms and the AUROC."""
    return score_sources(lambda images: bits_per_dim_of(model, images), digits, faces, noise)
