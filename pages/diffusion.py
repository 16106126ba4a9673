"""Diffusion: an unconditional and a class-conditional DDPM on 28x28 digits (UNet and schedulers from diffusers).

Choose a checkpoint, then draw samples with four samplers, watch the reverse process frame by
frame with several samplers side by side, drag t through the forward process and its noise
schedule, measure how quality grows with sampler steps, click a pixel to see where the UNet's
attention looks, and inpaint or SDEdit a digit; or train a model in the background.
The maths lives in the genlib diffusion family package (genlib/families/diffusion/); this page and
its parts in pages/diffusion/ (views.py, lab.py) only draw.
Session-state keys start with ``dif_``; no tensors are kept there (PNG bytes and numpy arrays only).
"""
import io
import time
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image

from genlib.background import Snapshot
from genlib.families.diffusion import SAMPLERS, reverse_timelines, timeline_gif
from genlib.images import grid_png, to_png
from pages._panels import metrics_panel, train_panel
from pages._ui import (GRID_SCALE, Picked, checkpoint_picker, download_png, global_seed, model_tabs, page_families,
                       require_router, scalars_figure)
from pages.diffusion.lab import attention_tab, editing_tab, steps_quality_tab
from pages.diffusion.views import (digits_fit, guidance_input, note_speed, recall, remember, schedule_figure,
                                   step_progress, test_digit_input, warn_if_slow)

require_router()

FAMILIES = page_families(__file__)
SAMPLER_NAMES = list(SAMPLERS)
SAMPLER_HELP = ("ddpm: ancestral sampling, fresh noise every step, needs many steps · ddim: deterministic at η=0, "
                "good in 20-50 steps · dpm-solver++: a second-order solver, good in 10-20 steps · euler: "
                "Karras-style Euler steps on the noise level")
TIMELINE_SAMPLERS = ["ddpm", "ddim", "dpm-solver++"]
MAX_TIMELINE_STEPS = 200   # every frame of every sampler stays in session memory for scrubbing (<= 40 MB)
MAX_TIMELINE_IMAGES = 8
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "ema_decay", "preview_every", "max_steps")
TRAIN_DEFAULTS = {"epochs": 5, "batch_size": 128, "lr": 5e-4, "ema_decay": 0.99, "preview_every": 50}
# The shipped recipe (scripts/train_shipped.sh): Min-SNR weighting learns faster, and 20 DPM-Solver++
# steps keep each preview (100 samples) to seconds where 50 DDIM steps would take several times longer.
MODEL_DEFAULTS = {"snr_gamma": 5.0, "sampler": "dpm-solver++", "sample_steps": 20}


def history_figure(history, height: int = 300) -> go.Figure:
    """The training loss, and the plain MSE beside it when Min-SNR weighting makes the loss differ."""
    return scalars_figure(history, ["loss", "mse"], [], "loss (MSE of the UNet's target)", "", height)


# -- samples ----------------------------------------------------------------------------------------
def samples_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    settings, view = st.columns([1, 3], gap="large")
    with settings:
        sampler = st.selectbox("Sampler", SAMPLER_NAMES, index=SAMPLER_NAMES.index(m.config.sampler),
                               key="dif_sampler", help=SAMPLER_HELP)
        steps = int(st.number_input("Steps", 1, m.num_train_timesteps, min(m.config.sample_steps,
                                                                           m.num_train_timesteps), key="dif_steps"))
        eta = st.slider("η (DDIM only)", 0.0, 1.0, 0.0, 0.1, key="dif_eta", disabled=sampler != "ddim",
                        help="0 = deterministic DDIM; 1 adds as much fresh noise per step as DDPM does.")
        eta = eta if sampler == "ddim" else 0.0
        guidance = guidance_input(m, "dif_guidance")
        if m.conditional:
            nrow = st.slider("Samples per digit (one row each)", 1, 10, 8, key="dif_per_digit")
            labels, what = m.class_rows(nrow).cpu(), "one row per digit"
            n = len(labels)
        else:
            n = st.select_slider("Samples", [4, 16, 36, 64], 16, key="dif_count")
            labels, nrow, what = None, int(n ** 0.5), f"{n} samples"
        calls = n * steps * (2 if guidance not in (None, 1.0) else 1)  # guidance runs the UNet twice
        warn_if_slow(p.path, calls, f"Sampling {n} images in {steps} steps")
        clicked = st.button("Sample", type="primary", key="dif_sample", icon=":material/auto_awesome:")
    settings_key = (p.path, p.mtime, sampler, steps, eta, guidance, n, seed)
    with view:
        if clicked:
            on_step = step_progress(f"Sampling {n} images with {sampler}")
            began = time.perf_counter()
            options = {"sampler": sampler, "steps": steps, "eta": eta} | (
                {"guidance_scale": guidance} if guidance is not None else {})
            images = m.draw(n, options, generator=torch.Generator().manual_seed(seed), labels=labels, callback=on_step)
            note_speed(p.path, time.perf_counter() - began, calls)
            remember("dif_samples", settings_key, grid_png(images, nrow, scale=GRID_SCALE))
            st.rerun()  # draw the grid without the finished progress bar
        png = recall("dif_samples", settings_key)
        if png is None:
            if p.info.preview:
                st.image(str(p.info.preview), caption="the checkpoint's preview samples", output_format="PNG")
            st.info("Press **Sample** to draw with these settings (the seed is the global seed in the sidebar).")
            return
        details = f"{sampler}, {steps} steps" + (f", η {eta:g}" if sampler == "ddim" else "") + \
            (f", guidance {guidance:g}" if guidance is not None else "")
        st.image(png, caption=f"{what} · {details} · seed {seed}", output_format="PNG")
        download_png(png, f"{p.info.name}-{sampler}-{steps}steps-seed{seed}.png", key="dif_dl_samples")


# -- the reverse process ---------------------------------------------------------------------------
TIMELINE_SCALE = 3      # timeline thumbnails: 28x28 digits at 84 px, large enough to see the noise resolve
PLAY_INTERVAL_S = 0.5   # Play shows one frame per half second (a frame is a few small PNGs)


def _show_row(container, images: np.ndarray, caption: str) -> None:
    """One row of images (N,C,H,W) in [0,1], enlarged, at its own pixel width: a longer caption
    would otherwise stretch one row's images more than the others'."""
    png = grid_png(torch.from_numpy(images), nrow=len(images), scale=TIMELINE_SCALE)
    with Image.open(io.BytesIO(png)) as decoded:
        width = decoded.width
    container.image(png, caption=caption, output_format="PNG", width=width)


def _toggle_play(last: int) -> None:
    """Play / Pause: playing from the last frame starts over at frame 0."""
    playing = not st.session_state.get("dif_playing", False)
    st.session_state["dif_playing"] = playing
    if playing and st.session_state.get("dif_frame", 0) >= last:
        st.session_state["dif_frame"] = 0


def _timeline_frames(timelines: dict, last: int, name: str) -> None:
    """The frame slider and every sampler's x_t and predicted x₀ at that frame.

    A fragment: while playing it reruns every PLAY_INTERVAL_S and moves the slider one frame on,
    so only this part of the page redraws; one tick after the last frame it stops and reruns the whole
    page, which turns the Pause button back into Play and ends the timer.
    """
    if st.session_state.get("dif_playing"):
        if st.session_state.get("dif_frame", 0) >= last:
            # The last frame has been on screen for a tick, so the browser's slider holds it too; only now
            # rerun the whole page (Play instead of Pause, no more ticks). Setting the slider's state and
            # rerunning in the same tick raced with the browser's own value and could stop a frame short.
            st.session_state["dif_playing"] = False
            st.rerun()
        st.session_state["dif_frame"] = st.session_state.get("dif_frame", 0) + 1  # the slider is not drawn yet
    frame = st.slider("Frame (the same step of every sampler)", 0, last, key="dif_frame",
                      help=f"Frame 0 is the starting noise x_T; frame {last} shows the finished samples. "
                           "Play steps through them.")
    for sampler, tl in timelines.items():
        if frame < len(tl.timesteps):
            x_t, x0, where = tl.x_t[frame], tl.x0_pred[frame], f"step {frame + 1}/{len(tl.timesteps)} · t = " \
                                                              f"{tl.timesteps[frame]}"
        else:
            x_t, x0, where = tl.final, tl.final, "finished samples"
        head, download = st.columns([6, 1], vertical_alignment="center")
        head.markdown(f"**{sampler}** · {where} · {tl.seconds:.1f} s for the whole run")
        download.download_button("GIF", data=partial(timeline_gif, tl), file_name=f"{name}-{sampler}.gif",
                                 mime="image/gif", key=f"dif_gif_{sampler}", on_click="ignore",
                                 icon=":material/download:", help="The whole run animated: x_t above, x₀ below.")
        # One above the other, each at full size: side by side, 8 images per row would not fit.
        _show_row(st, x_t, f"{sampler}: x_t, the sample entering this step")
        _show_row(st, x0, f"{sampler}: predicted x₀ (the model's guess of the clean image)")


def timeline_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    cols = st.columns([3, 1, 1, 2])
    samplers = cols[0].multiselect("Samplers", SAMPLER_NAMES, default=TIMELINE_SAMPLERS, key="dif_tl_samplers",
                                   help=SAMPLER_HELP)
    top = min(MAX_TIMELINE_STEPS, m.num_train_timesteps)
    steps = int(cols[1].number_input("Steps", 2, top, min(20, top), key="dif_tl_steps",
                                     help=f"At most {top}: every frame is kept so the slider can scrub."))
    batch = int(cols[2].number_input("Images", 1, MAX_TIMELINE_IMAGES, 4, key="dif_tl_batch"))
    guidance = guidance_input(m, "dif_tl_guidance", cols[3])
    settings = (p.path, p.mtime, tuple(samplers), steps, batch, guidance, seed)
    calls = len(samplers) * steps * batch * (2 if guidance not in (None, 1.0) else 1)
    warn_if_slow(p.path, calls, f"{len(samplers)} samplers x {steps} steps")
    if st.button("Run", type="primary", key="dif_tl_run", icon=":material/play_arrow:", disabled=not samplers):
        bar = st.progress(0.0, text="starting…")
        began = time.perf_counter()
        timelines = reverse_timelines(m, samplers, batch, steps, seed, labels=m.default_labels(batch),
                                      guidance_scale=guidance, report=lambda f, msg: bar.progress(f, text=msg))
        note_speed(p.path, time.perf_counter() - began, calls)
        st.session_state["dif_timeline"] = {"settings": settings, "timelines": timelines}
        st.session_state["dif_frame"] = 0
        st.session_state["dif_playing"] = False
        bar.empty()
    if not samplers:
        st.warning("Choose at least one sampler.")
    stored = st.session_state.get("dif_timeline")
    if not stored or stored["settings"][:2] != settings[:2]:
        st.session_state["dif_playing"] = False
        st.info("Choose samplers and press **Run**: every sampler starts from the same noise (the global seed), "
                "so frame by frame you see how each one turns it into digits.")
        return
    if stored["settings"] != settings:
        st.caption("Showing the last run; press **Run** to apply the new settings.")
    timelines = stored["timelines"]
    last = max(len(tl.timesteps) for tl in timelines.values())  # frame `last` is the finished samples
    st.session_state["dif_frame"] = min(st.session_state.get("dif_frame", 0), last)
    playing = bool(st.session_state.get("dif_playing"))
    st.button("Pause" if playing else "Play", key="dif_tl_play", on_click=_toggle_play, args=(last,),
              icon=":material/pause:" if playing else ":material/play_circle:",
              help="Step through every frame, from the starting noise to the finished samples.")
    # The timer belongs to the fragment only while playing: a still timeline costs nothing.
    st.fragment(_timeline_frames, run_every=PLAY_INTERVAL_S if playing else None)(timelines, last, p.info.name)


# -- the forward process ------------------------------------------------------------------------------
def forward_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    if not digits_fit(m):
        st.warning("This model draws images of another shape than the 28x28 test digits; only its schedule is shown.")
        st.plotly_chart(schedule_figure(m, 0), key="dif_fw_schedules")
        return
    last = m.num_train_timesteps - 1
    left, right = st.columns([1, 2], gap="large")
    with left:
        x0, label = test_digit_input("dif_fw_digit")
        t = st.slider("t (forward-process step)", 0, last, last // 4, key="dif_fw_t")
        x_t = m.noisy_at(x0, t, generator=torch.Generator().manual_seed(seed))
        st.image(to_png(np.concatenate([_gray(x0), _gray(x_t)], axis=1), scale=6),
                 caption=f"x₀ (a {label}) and x_t at t = {t}: the same noise for every t (seed {seed})",
                 output_format="PNG")
        curves = m.schedule_curves()
        a, b = st.columns(2)
        a.metric("ᾱ_t", f"{curves['alphas_cumprod'][t]:.4f}", help="the share of the signal's variance left in x_t")
        b.metric("log-SNR", f"{curves['log_snr'][t]:.2f}", help="log(ᾱ_t / (1 − ᾱ_t)); 0 = as much noise as signal")
    with right:
        st.plotly_chart(schedule_figure(m, t), key="dif_fw_schedules")
    strip_t = np.linspace(0, last, 10).round().astype(int)
    strip = m.noisy_at(x0.repeat(len(strip_t), 1, 1, 1), torch.from_numpy(strip_t),
                       generator=torch.Generator().manual_seed(seed))
    st.image(grid_png(strip, nrow=len(strip_t), scale=3), output_format="PNG",
             caption="the same digit at t = " + ", ".join(map(str, strip_t)))


def _gray(image: torch.Tensor) -> np.ndarray:
    """(1,1,H,W) in [0,1] -> uint8 (H,W) for side-by-side display."""
    return (image[0, 0].detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


# -- training ----------------------------------------------------------------------------------------
def diffusion_live(snap: Snapshot, key_prefix: str) -> None:
    """The loss (and plain MSE), a note on the EMA weights, and the latest fixed-noise preview."""
    view = snap.state
    left, right = st.columns([3, 2])
    with left:
        if view.history:
            st.plotly_chart(history_figure(view.history), key=f"{key_prefix}_live_loss_{snap.id}")
        decay = view.train_config.ema_decay
        if decay:
            st.caption(f"EMA on (decay {decay:g}, averaging roughly the last {1 / (1 - decay):.0f} steps): previews "
                       "show the raw weights, the saved run keeps the smoother averaged ones.")
        else:
            st.caption("EMA off: the saved run keeps the last weights. An EMA (decay 0.99-0.999) usually gives "
                       "cleaner samples from diffusion models.")
    with right:
        if view.preview is not None:
            st.image(to_png(view.preview, scale=GRID_SCALE), caption=f"samples at step {view.preview_step}",
                     output_format="PNG")
        else:
            st.caption("Samples appear after the first step.")
    if snap.message and not snap.done:
        st.caption(snap.message)


def train_tab() -> None:
    st.caption("A UNet learns to predict the noise added to digits at a random step t. Each preview draws "
               "100 samples with the model's default sampler and steps (fewer sample steps = faster previews).")
    train_panel(FAMILIES, "dif", TRAIN_FIELDS, train_defaults=TRAIN_DEFAULTS, render=diffusion_live,
                model_defaults=lambda family: MODEL_DEFAULTS)


def metrics_tab(p: Picked) -> None:
    metrics_panel(p, "dif", history_figure=history_figure)
    if "bits_per_dim" in p.info.metrics:
        st.caption("bits/dim here is the DDPM variational bound (Ho et al. 2020): an upper bound on the true "
                   "negative log-likelihood, so the model's real bits/dim are lower. The Compare page lists it too.")
    else:
        st.caption("No bits/dim measured for this checkpoint yet: the Compare page measures it (for diffusion "
                   "models the variational bound, an upper bound on the true negative log-likelihood).")


# -- page ---------------------------------------------------------------------------------------------
TABS = {
    "Samples": samples_tab,
    "Reverse process": timeline_tab,
    "Forward process": forward_tab,
    "Steps vs quality": steps_quality_tab,
    "Attention": attention_tab,
    "Editing": editing_tab,
    "Train": train_tab,
    "Metrics & downloads": metrics_tab,
}

st.title("Diffusion")
st.caption("Noise is added to digits step by step; a UNet learns to undo one step, and sampling runs it backwards "
           "from pure noise. Unconditional and class-conditional (classifier-free guidance) models.")
picked = checkpoint_picker(FAMILIES, key="dif_model", default_family="diffusion")
if picked is not None:
    m = picked.model
    st.caption(f"{m.description} · {m.num_parameters():,} parameters · {m.config.schedule} schedule, T = "
               f"{m.num_train_timesteps} · predicts {m.config.prediction}")

model_tabs(TABS, "dif_tab", picked, needs_no_model=(train_tab,))
