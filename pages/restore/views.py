"""The Restore page's views: a before/after slider, a synchronised zoom, a difference map and the
metrics chart. Drawing only; every number comes from genlib's restoration package. Keys start ``rst_``."""
from __future__ import annotations

import base64
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from genlib.data import photo_png

SLIDER_WIDTH = 720   # on-screen width of the before/after slider (the downloads stay full size)


def _data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(photo_png(image)).decode()


def before_after(before: np.ndarray, after: np.ndarray, labels: tuple[str, str], key: str) -> None:
    """A before/after slider over the full image, written out in HTML and CSS: no CDN, so it works offline.

    Dragging the range input moves the dividing line; the left side shows ``before``.
    """
    h, w = after.shape[:2]
    width = min(SLIDER_WIDTH, w)
    height = int(round(h * width / w))
    left, right = labels
    html = f"""
<div id="{key}" style="position:relative;width:{width}px;height:{height}px;user-select:none;font:13px sans-serif">
  <img src="{_data_url(after)}" style="position:absolute;left:0;top:0;width:{width}px;height:{height}px">
  <div class="before" style="position:absolute;left:0;top:0;width:{width}px;height:{height}px;
       clip-path:inset(0 50% 0 0)"><img src="{_data_url(before)}" style="width:{width}px;height:{height}px"></div>
  <div class="line" style="position:absolute;top:0;left:50%;width:2px;height:{height}px;background:#fff;
       box-shadow:0 0 3px #000"></div>
  <span style="position:absolute;left:6px;top:6px;background:#000a;color:#fff;padding:2px 6px">{left}</span>
  <span style="position:absolute;right:6px;top:6px;background:#000a;color:#fff;padding:2px 6px">{right}</span>
  <input type="range" min="0" max="100" value="50" aria-label="before/after position"
         style="position:absolute;left:0;bottom:4px;width:{width}px;margin:0"
         oninput="const r=this.parentNode;
                  r.querySelector('.before').style.clipPath='inset(0 '+(100-this.value)+'% 0 0)';
                  r.querySelector('.line').style.left=this.value+'%';">
</div>"""
    st.iframe(html, height=height + 10, width=width + 4)  # our own markup; the pixels travel as base64 PNG


def crop(image: np.ndarray, centre: tuple[float, float], size: int) -> np.ndarray:
    """A ``size`` x ``size`` window of ``image`` (H,W,C) around ``centre`` (fractions of width and height)."""
    h, w = image.shape[:2]
    size = min(size, h, w)
    y = int(np.clip(centre[1] * h - size / 2, 0, h - size))
    x = int(np.clip(centre[0] * w - size / 2, 0, w - size))
    return image[y:y + size, x:x + size]


def zoomed(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` enlarged ``factor`` times by repeating pixels (crisp, so noise and artefacts stay visible)."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def difference(image: np.ndarray, reference: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|image - reference| averaged over channels and amplified ``gain`` times, as a grey map (H,W,1)."""
    return np.clip(np.abs(image - reference).mean(axis=2, keepdims=True) * gain, 0, 1)


def metrics_figure(table: pd.DataFrame, height: int = 320) -> go.Figure:
    """PSNR bars per method (higher is better), SSIM in the hover."""
    ordered = table.sort_values("PSNR (dB)")
    fig = go.Figure(go.Bar(x=ordered["PSNR (dB)"], y=ordered["method"], orientation="h",
                           text=[f"{v:.2f} dB" for v in ordered["PSNR (dB)"]], textposition="auto",
                           customdata=ordered["SSIM"], hovertemplate="%{y}: %{x:.2f} dB, SSIM %{customdata:.3f}"))
    low = float(ordered["PSNR (dB)"].min())
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      title="PSNR against the clean photo · higher →",
                      xaxis=dict(title="PSNR (dB)", range=[max(0.0, low - 3), float(ordered["PSNR (dB)"].max()) + 1]))
    return fig


def zoom_row(images: Sequence[tuple[str, np.ndarray]], centre: tuple[float, float], size: int, factor: int) -> None:
    """The same window of every image, side by side, enlarged."""
    columns = st.columns(min(4, len(images)))
    for i, (name, image) in enumerate(images):
        columns[i % len(columns)].image(photo_png(zoomed(crop(image, centre, size), factor)), caption=name,
                                        output_format="PNG")
