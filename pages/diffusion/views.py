"""Small pieces the diffusion page's tabs share: test digits and uploads as model inputs, a progress
bar fed by a sampler's callback, per-session result caches, and the page's plotly figures.

Drawing only: every number plotted comes from the genlib diffusion family package. Session-state keys
start with ``dif_``.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from genlib.data import DIGIT_UPLOAD_FORMATS, UploadError, format_names, load_upload, mnist, upload_types
from genlib.families.diffusion import StepsQuality, all_schedule_curves
from genlib.model import SamplingStep

COMPARED_SCHEDULES = ("linear", "cosine", "sigmoid")
REMEMBERED_RESULTS = 8   # per cache: enough to flip between a few settings without recomputing
# Sequential, dark = little attention, bright = much, like the colour bar. Not "Inferno": its first
# colour is #000004, one of the placeholders (#000001-#000010) Streamlit's plotly theme replaces with
# its categorical colours, which turned the lowest values pink, above black.
ATTENTION_COLOURS = "Viridis"
SAMPLER_COLOURS = {"ddpm": "#636efa", "ddim": "#ef553b", "dpm-solver++": "#00cc96", "euler": "#ab63fa"}


# -- inputs -------------------------------------------------------------------------------------------
def digits_fit(model) -> bool:
    """Whether the model draws images of the test digits' shape (a hub model may draw 32x32 RGB)."""
    return tuple(model.image_shape) == tuple(mnist().test_images.shape[1:])


def test_digit_input(key: str, label: str = "Test digit (index into the 1,000 test digits)"
                     ) -> tuple[torch.Tensor, int]:
    """A number input choosing one test digit; returns (image (1,1,28,28) in [0,1], its label)."""
    split = mnist()
    index = int(st.number_input(label, 0, len(split.test_images) - 1, 0, key=key))
    return split.test_images[index:index + 1], int(split.test_labels[index])


def uploaded_digit(key: str) -> tuple[torch.Tensor | None, str]:
    """An uploader for one digit image: (image (1,1,28,28) in [0,1] or None, its digest for cache keys).

    The uploader takes the files of DIGIT_UPLOAD_FORMATS (genlib.data.upload_types) and the bytes go
    through genlib.data.load_upload (size, pixel count and format limits, read off the content); anything
    it refuses is shown with st.error and None is returned.
    """
    upload = st.file_uploader(f"Upload a digit ({format_names(DIGIT_UPLOAD_FORMATS)}; dark ink on light paper is "
                              "inverted to match MNIST)", type=upload_types(DIGIT_UPLOAD_FORMATS), key=key)
    st.page_link("pages/restore.py", label="This takes one handwritten digit (shrunk to 28x28). To denoise or "
                 "upscale a photo, use the Restore photos page →", icon=":material/auto_fix_high:")
    if upload is None:
        return None, ""
    data = upload.getvalue()
    try:
        image = load_upload(data)
    except UploadError as err:
        st.error(f"Could not use {upload.name}: {err}")
        return None, ""
    return image, hashlib.sha256(data).hexdigest()


def guidance_input(model, key: str, container=st) -> float | None:
    """The classifier-free guidance slider of a class-conditional model; None for unconditional ones."""
    if not model.conditional:
        return None
    return float(container.slider(
        "Guidance scale", 0.0, 8.0, float(model.sampling_defaults().guidance_scale), 0.5, key=key,
        help="Classifier-free guidance: 1 = the plain conditional model, 0 = ignore the class, above 1 = "
             "follow the class harder (clearer digits, less variety)."))


def step_progress(what: str) -> Callable[[SamplingStep], None]:
    """A progress bar and a callback for the model's sampling loop that moves it every step.

    Each update is a Streamlit call, so any widget click stops a long run at the next step
    instead of freezing the app until it ends.
    """
    bar = st.progress(0.0, text=f"{what}…")

    def on_step(step: SamplingStep) -> None:
        done = step.step + 1
        bar.progress(done / step.num_steps, text=f"{what}: step {done}/{step.num_steps} (t={step.t})")

    return on_step


# -- guarding long runs in the script thread ----------------------------------------------------------
SLOW_RUN_S = 30  # above this estimate a tab warns before running


def note_speed(path: str, seconds: float, calls: int) -> None:
    """Remember this model's seconds per UNet image-evaluation, measured on the run just finished."""
    rates = dict(st.session_state.get("dif_seconds_per_call", {}))
    rates[path] = seconds / max(calls, 1)
    st.session_state["dif_seconds_per_call"] = rates


def warn_if_slow(path: str, calls: int, what: str) -> None:
    """A warning when ``calls`` UNet image-evaluations should take long, from the last measured speed."""
    rate = st.session_state.get("dif_seconds_per_call", {}).get(path)
    if rate is not None and rate * calls > SLOW_RUN_S:
        st.warning(f"{what} should take about {rate * calls:.0f} s here. It runs while you watch its progress; "
                   "changing any setting stops it.")


# -- per-session caches of finished results (PNG bytes and numpy arrays only, never tensors) ------------
def recall(store: str, settings: Hashable) -> Any | None:
    """The result remembered in session state ``store`` for ``settings``, or None."""
    return st.session_state.get(store, {}).get(settings)


def remember(store: str, settings: Hashable, result: Any) -> None:
    """Keep ``result`` for ``settings``; only the newest REMEMBERED_RESULTS entries stay."""
    kept = dict(st.session_state.get(store, {}))
    kept.pop(settings, None)
    kept[settings] = result
    st.session_state[store] = dict(list(kept.items())[-REMEMBERED_RESULTS:])


# -- figures -----------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=8)
def _schedule_curves(num_train_timesteps: int) -> dict[str, dict[str, np.ndarray]]:
    return all_schedule_curves(num_train_timesteps)


def schedule_figure(model, t: int, height: int = 340) -> go.Figure:
    """ᾱ_t and log-SNR against t for the standard schedules, the model's own drawn thick, a line at t."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ᾱ_t: the share of the signal's variance left",
                                                        "log-SNR = log(ᾱ_t / (1 − ᾱ_t))"))
    for name, curves in _schedule_curves(model.num_train_timesteps).items():
        if name not in COMPARED_SCHEDULES:
            continue
        for col, key in ((1, "alphas_cumprod"), (2, "log_snr")):
            fig.add_trace(go.Scatter(x=curves["t"], y=curves[key], name=name, legendgroup=name, showlegend=col == 1,
                                     mode="lines", line=dict(width=1.5, dash="dot")), row=1, col=col)
    own = model.schedule_curves()
    label = f"this model ({model.config.schedule})"
    for col, key in ((1, "alphas_cumprod"), (2, "log_snr")):
        fig.add_trace(go.Scatter(x=own["t"], y=own[key], name=label, legendgroup="own", showlegend=col == 1,
                                 mode="lines", line=dict(width=4, color="black")), row=1, col=col)
    fig.add_vline(x=t, line=dict(color="crimson", width=2), row="all", col="all")
    fig.update_xaxes(title_text="t")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def quality_figure(result: StepsQuality, height: int = 380) -> go.Figure:
    """Fréchet distance against sampler steps (log axis), one line per sampler."""
    fig = go.Figure()
    for sampler in dict.fromkeys(p.sampler for p in result.points):
        points = sorted((p for p in result.points if p.sampler == sampler), key=lambda p: p.steps)
        fig.add_trace(go.Scatter(
            x=[p.steps for p in points], y=[p.frechet_distance for p in points], name=sampler, mode="lines+markers",
            line=dict(color=SAMPLER_COLOURS.get(sampler)), customdata=[p.seconds for p in points],
            hovertemplate="%{x} steps · Fréchet distance %{y:.2f} · sampled in %{customdata:.1f} s"))
    steps = sorted({p.steps for p in result.points})
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.1),
                      xaxis=dict(type="log", title="sampler steps", tickvals=steps, ticktext=[str(s) for s in steps]),
                      yaxis=dict(title="Fréchet distance ↓"))
    return fig


def _block_extent(size: int, cells: int) -> dict[str, float]:
    """Heatmap placement of ``cells`` attention tokens across ``size`` image pixels (centred cells)."""
    step = size / cells
    return {"start": (step - 1) / 2, "step": step}


def attention_click_figure(image: np.ndarray, attention: np.ndarray, query: tuple[int, int],
                           height: int = 460) -> go.Figure:
    """A grey image (H,W) under one query's attention map (h,w), with a clickable point on every pixel.

    Streamlit reports selections of scatter points only, not heatmap clicks, so an invisible
    marker sits on each pixel; clicking one selects its (row, column).
    """
    rows, cols = image.shape
    h, w = attention.shape
    y_place, x_place = _block_extent(rows, h), _block_extent(cols, w)
    fig = go.Figure(go.Heatmap(z=image, colorscale="gray", showscale=False, hoverinfo="skip", zmin=0, zmax=1))
    fig.add_trace(go.Heatmap(z=attention, x0=x_place["start"], dx=x_place["step"], y0=y_place["start"],
                             dy=y_place["step"], colorscale=ATTENTION_COLOURS, opacity=0.55, zmin=0, hoverinfo="skip",
                             colorbar=dict(title=dict(text="attention", side="right"), thickness=12)))
    grid_r, grid_c = np.mgrid[0:rows, 0:cols]
    fig.add_trace(go.Scatter(x=grid_c.ravel(), y=grid_r.ravel(), mode="markers", name="pixels", showlegend=False,
                             marker=dict(size=max(4, height // rows - 2), color="rgba(0,0,0,0)", symbol="square"),
                             hovertemplate="row %{y}, column %{x}<extra>click to query</extra>"))
    fig.add_trace(go.Scatter(x=[query[1]], y=[query[0]], mode="markers", name="query", showlegend=False,
                             hoverinfo="skip", marker=dict(size=14, color="cyan", symbol="x-thin",
                                                            line=dict(width=3, color="cyan"))))
    fig.update_layout(height=height, width=height + 80, margin=dict(l=10, r=10, t=10, b=10), dragmode=False,
                      clickmode="event+select", xaxis=dict(range=[-0.5, cols - 0.5], fixedrange=True, showgrid=False,
                                                           constrain="domain"),
                      yaxis=dict(range=[rows - 0.5, -0.5], fixedrange=True, showgrid=False, scaleanchor="x"))
    return fig


def attention_row_figure(maps: np.ndarray, timesteps: Sequence[int], query: tuple[int, int],
                         image_shape: tuple[int, int], height: int = 220) -> go.Figure:
    """One small heatmap per timestep of a query's attention maps (M,h,w), each on its own colour scale."""
    rows, cols = image_shape
    fig = make_subplots(rows=1, cols=len(timesteps), subplot_titles=[f"t = {t}" for t in timesteps],
                        horizontal_spacing=0.02)
    for i, attention in enumerate(maps):
        h, w = attention.shape
        y_place, x_place = _block_extent(rows, h), _block_extent(cols, w)
        fig.add_trace(go.Heatmap(z=attention, x0=x_place["start"], dx=x_place["step"], y0=y_place["start"],
                                 dy=y_place["step"], colorscale=ATTENTION_COLOURS, showscale=False,
                                 hovertemplate="attention %{z:.3f}<extra></extra>"), row=1, col=i + 1)
        fig.add_trace(go.Scatter(x=[query[1]], y=[query[0]], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=9, color="cyan", symbol="x-thin", line=dict(width=2, color="cyan"))),
                      row=1, col=i + 1)
    fig.update_xaxes(range=[-0.5, cols - 0.5], showticklabels=False, fixedrange=True)
    fig.update_yaxes(range=[rows - 0.5, -0.5], showticklabels=False, fixedrange=True)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10))
    return fig
