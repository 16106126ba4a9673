"""Image grids and PNG encoding, without torchvision."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin
from torch import Tensor


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
    return to_png(to_grid(images, nrow), metadata, scale)
