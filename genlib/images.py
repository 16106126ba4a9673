"""Image grids and PNG encoding, without torchvision."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """Images (N,C,H,W) in [0,1] -> uint8 (N,H,W) for one channel, (N,H,W,3) for RGB."""
    x = (images.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def from_uint8(array: np.ndarray) -> Tensor:
    """The inverse of ``to_uint8``: (N,H,W) or (N,H,W,3) uint8 -> (N,C,H,W) float in [0,1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)


def to_grid(images: Tensor, nrow: int = 8, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images (N,C,H,W) in [0,1] into one uint8 array (rows*H', nrow*W') or (.., .., 3)."""
    x = images.detach().float().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = x[i]
    out = (grid * 255 + 0.5).astype(np.uint8)
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def to_png(array: np.ndarray, metadata: dict[str, str] | None = None, scale: int = 1) -> bytes:
    """Encode a uint8 array as PNG; ``metadata`` goes into tEXt chunks; ``scale`` enlarges crisply."""
    img = Image.fromarray(array)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    info = PngImagePlugin.PngInfo()
    for k, v in (metadata or {}).items():
        info.add_text(k, str(v))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def grid_png(images: Tensor, nrow: int = 8, scale: int = 2, metadata: dict[str, str] | None = None) -> bytes:
    """PNG bytes of ``to_grid(images, nrow)`` for images (N,C,H,W) in [0,1], enlarged ``scale`` times."""
    return to_png(to_grid(images, nrow), metadata, scale)


def frames_gif(frames: list[Tensor], nrow: int, scale: int = 4, frame_ms: int = 80, hold_ms: int = 1500) -> bytes:
    """A looping GIF of image grids, one frame per tensor (N,C,H,W) in [0,1], the last held ``hold_ms``."""
    images = [Image.fromarray(to_grid(f, nrow=nrow)) for f in frames]
    images = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=[frame_ms] * (len(images) - 1) + [hold_ms])
    return buf.getvalue()
