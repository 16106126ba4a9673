"""Looking inside the autoregressive models: sampling pixel by pixel on the background runner (every
row kept as a frame), receptive fields as pictures, and the exact likelihood per image and per pixel.

Pure torch / numpy / pandas, no Streamlit: the Autoregressive page calls these and only draws.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from genlib.background import Control, Work
from genlib.families.autoregressive.model import SIDE, AutoregressiveModel
from genlib.likelihood import benchmark_data
from genlib.model import SamplingStep
from genlib.outliers import score_sources

MAX_ANIMATED = 16   # digits a pixel-by-pixel animation draws at once (each costs 784 network passes)
# Images per forward pass when scoring. The 8-bit PixelCNN's logits are (B,256,28,28) floats, about
# 0.8 MB an image, twice over with the log-softmax: at 250 the Likelihood tab pushed the hosted demo
# past a 1 GiB container (OOM-killed in scripts/smoke_container.sh); at 50 it adds about 80 MB.
BATCH = 50


class PixelSampling(Work):
    """Draws ``count`` digits pixel by pixel; ``view()`` is the list of frames so far, one per finished row
    (each (count,1,28,28)), so a page can show the image filling in and scrub it afterwards."""

    kind = "pixel-sampling"

    def __init__(self, model: AutoregressiveModel, count: int, seed: int, key: str | None = None):
        if not 1 <= count <= MAX_ANIMATED:
            raise ValueError(f"draw 1 to {MAX_ANIMATED} digits pixel by pixel, not {count}: each costs 784 passes "
                             "of the network")
        super().__init__(key, title=f"sampling {count} digits pixel by pixel")
        self.model, self.count, self.seed = model, count, seed
        self.frames: list[Tensor] = []

    def view(self) -> list[Tensor]:
        """The frames drawn so far (the list is copied; the tensors are not changed afterwards)."""
        return list(self.frames)

    def run(self, control: Control) -> Tensor:
        """The finished digits (count,1,28,28)."""
        def on_row(step: SamplingStep) -> None:
            with self.lock:
                self.frames.append(step.state.cpu())
            control.report((step.step + 1) / SIDE, f"row {step.step + 1}/{SIDE}", step=step.step + 1, total=SIDE)

        return self.model.sample(self.count, generator=torch.Generator().manual_seed(self.seed), callback=on_row).cpu()


def field_picture(field: Tensor, row: int, col: int, scale: int = 8) -> np.ndarray:
    """A receptive field (28,28) bool as an RGB picture: seen pixels blue, the predicted pixel red,
    the rest white."""
    rgb = np.full((SIDE, SIDE, 3), 255, dtype=np.uint8)
    rgb[field.numpy()] = (79, 70, 229)
    rgb[row, col] = (239, 68, 68)
    return np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8))


@torch.no_grad()
def nll_of(model: AutoregressiveModel, images: Tensor) -> Tensor:
    """The exact -log p (N,) in the model's unit (nats for binarized models, bits/dim for 8-bit ones) of
    grey-level images (N,1,28,28), made into the model's data (binarized once, or 8-bit)."""
    data = benchmark_data(model.likelihood_benchmark(), images)
    bpd = torch.cat([model.bits_per_dim(part.to(model.device)).cpu() for part in data.split(BATCH)])
    return bpd * data[0].numel() * np.log(2) if model.binary else bpd


def nll_table(model: AutoregressiveModel, digits: Tensor, faces: Tensor, noise: Tensor) -> pd.DataFrame:
    """Exact -log p per image of test digits, faces and noise (columns score and source, ``genlib.outliers``)."""
    return score_sources(lambda images: nll_of(model, images), digits, faces, noise)


@torch.no_grad()
def pixel_nll_map(model: AutoregressiveModel, image: Tensor) -> tuple[Tensor, Tensor]:
    """(the model's data for one grey-level digit (28,28), its -log p per pixel (28,28) in nats): where the
    model was surprised."""
    x = benchmark_data(model.likelihood_benchmark(), image.view(1, 1, SIDE, SIDE)).to(model.device)
    logits = model.logits(x)
    if model.binary:
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")[0, 0]
    else:
        per_pixel = F.cross_entropy(logits, model.target(x), reduction="none")[0]
    return x[0, 0].cpu(), per_pixel.cpu()
