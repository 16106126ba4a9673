"""Run a restorer over a photo of any size in overlapping tiles, with no seams and bounded memory.

Each tile is cut with a margin of at least the network's receptive radius around the region it
keeps, so every kept output pixel sees exactly the context it would see in one pass over the whole
photo: the result equals whole-image inference (up to float rounding), and memory stays that of
one tile. Photos are (H,W,C) float32 in [0,1]; grey ones go through the colour nets as three equal
channels and come back grey.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

TILE = 256  # kept pixels per tile side (input pixels for upscaling); ~0.2 GB of activations for the denoiser


def restore_tiled(net: Callable[[Tensor], Tensor], image: np.ndarray, *, scale: int = 1, margin: int = 16,
                  tile: int = TILE, device: torch.device | str = "cpu",
                  progress: Callable[[float, str], None] | None = None) -> np.ndarray:
    """``net`` (N,3,h,w) -> (N,3,scale*h,scale*w) applied to ``image`` (H,W,C) tile by tile; returns (sH,sW,C).

    ``margin`` input pixels of context surround each tile (use the net's receptive radius or more).
    ``progress(fraction, message)`` is called after every tile.
    """
    h, w, c = image.shape
    rgb = np.repeat(image, 3, axis=2) if c == 1 else image
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float()   # (1,3,H,W)
    out = np.zeros((h * scale, w * scale, 3), dtype=np.float32)
    rows, cols = range(0, h, tile), range(0, w, tile)
    total, done = len(rows) * len(cols), 0
    with torch.no_grad():
        for y0 in rows:
            for x0 in cols:
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                py0, px0, py1, px1 = max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
                piece = net(x[:, :, py0:py1, px0:px1].to(device)).float().clamp(0, 1).cpu()[0]   # (3,s*ph,s*pw)
                keep = piece[:, (y0 - py0) * scale:(y1 - py0) * scale, (x0 - px0) * scale:(x1 - px0) * scale]
                out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = keep.numpy().transpose(1, 2, 0)
                done += 1
                if progress is not None:
                    progress(done / total, f"tile {done}/{total}")
    return out.mean(axis=2, keepdims=True) if c == 1 else out
