"""The diffusion page's deeper tabs: steps against quality (a background task), attention maps with a
clickable query pixel, and editing (RePaint inpainting, SDEdit).

Drawing only; the maths is in the genlib diffusion family package (through the model's methods).
Session-state keys start with ``dif_``.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from genlib import background
from genlib.background import Snapshot, start_task
from genlib.comparison import folder_fingerprint
from genlib.families.diffusion import (CURVE_SAMPLERS, DEFAULT_CURVE_STEPS, MASK_KINDS, MIN_CURVE_SAMPLES, SAMPLERS,
                                       STEPS_GRID, load_steps_quality, make_mask, save_steps_quality, steps_quality)
from genlib.images import grid_png
from pages._ui import Picked, caps, demo_caption, device_label, download_png, global_seed, watch
from pages.diffusion.views import (attention_click_figure, attention_row_figure, digits_fit, guidance_input,
                                   quality_figure, recall, remember, step_progress, test_digit_input, uploaded_digit)

ROW_TIMESTEPS = 6          # timesteps in the attention-over-time row
SHIPPED_CURVE = {"num_samples": 250, "seed": 0}   # what shipped checkpoints' steps_quality.json measured


# -- steps against quality ------------------------------------------------------------------------------
def _measure_and_save(model, folder: Path, samplers: list[str], grid: list[int], num_samples: int, seed: int,
                      report, cancel) -> object:
    """The task's body (a worker thread, no Streamlit): measure the curve, then cache it on disk for everyone."""
    result = steps_quality(model, samplers=samplers, steps_grid=grid, num_samples=num_samples, seed=seed,
                           report=report)
    save_steps_quality(folder, result)
    return result


def _curve_progress(snap: Snapshot) -> None:
    """The running curve's progress, redrawn every second by ``watch``; Cancel stops it at its next sampler step."""
    eta = f" · about {snap.eta_s:.0f} s left" if snap.eta_s is not None else ""
    st.progress(snap.fraction, text=f"{snap.message} · {snap.elapsed_s:.0f} s{eta}")
    if st.button("Cancel", key="dif_sq_cancel", icon=":material/stop:"):
        background.get(snap.id).cancel()
        st.caption("Cancelling after the current sampler step…")


def _draw_curve(result, key_name: str) -> None:
    st.plotly_chart(quality_figure(result), key="dif_sq_chart")
    guidance = "" if result.guidance_scale is None else f" · guidance {result.guidance_scale:g}"
    st.caption(f"{result.num_samples} samples per point from seed {result.seed}{guidance}, scored like the Compare "
               "page (the digit classifier's features against 4,000 training digits). Lower is better.")
    table = pd.DataFrame([{"sampler": q.sampler, "steps": q.steps, "Fréchet distance": round(q.frechet_distance, 3),
                           "seconds to sample": round(q.seconds, 2)} for q in result.points])
    st.dataframe(table, hide_index=True)
    st.download_button("Curve (CSV)", data=table.to_csv(index=False), file_name=f"{key_name}-steps-quality.csv",
                       mime="text/csv", key="dif_sq_csv", on_click="ignore", icon=":material/download:")


def steps_quality_tab(p: Picked) -> None:
    m = p.model
    if not digits_fit(m):
        st.warning("The evaluator judges 28x28 digits; this model draws other images, so it cannot be scored.")
        return
    options = [s for s in STEPS_GRID if s <= m.num_train_timesteps]
    cols = st.columns([2, 2, 1, 1])
    samplers = cols[0].multiselect("Samplers", list(CURVE_SAMPLERS), default=list(CURVE_SAMPLERS),
                                   key="dif_sq_samplers")
    grid = cols[1].multiselect("Steps", options, default=[s for s in DEFAULT_CURVE_STEPS if s in options],
                               key="dif_sq_grid")
    most = caps().samples or 5000
    num_samples = int(cols[2].number_input("Samples per point", MIN_CURVE_SAMPLES, most,
                                           min(SHIPPED_CURVE["num_samples"], most), step=50, key="dif_sq_samples",
                                           help="More samples: a steadier Fréchet distance, a longer wait. "
                                                "Shipped checkpoints carry curves of 250 samples from seed 0."))
    seed = int(cols[3].number_input("Seed", 0, 2**31 - 1, SHIPPED_CURVE["seed"], key="dif_sq_seed"))
    demo_caption("samples")
    if 1000 in grid and device_label() == "CPU":
        st.warning("1000 steps is slow on the CPU: every sample runs the UNet 1000 times (minutes for 250 samples).")
    if not samplers or not grid:
        st.info("Choose at least one sampler and one step count.")
        return
    grid = sorted(grid)
    result = load_steps_quality(p.info.path, num_samples=num_samples, seed=seed, steps_grid=grid, samplers=samplers)
    if result is not None:
        _draw_curve(result, p.info.name)
        return
    key = (f"steps-quality:{folder_fingerprint(p.info.path)}:{num_samples}:{seed}:"
           f"{','.join(map(str, grid))}:{','.join(samplers)}")
    tasks = st.session_state.setdefault("dif_sq_tasks", {})  # settings key -> task id
    task = background.get(tasks.get(key))
    snap = task.snapshot() if task is not None else None
    if snap is not None and snap.status == "running":
        watch([task.id], lambda snaps: _curve_progress(snaps[0]))
        return
    if snap is not None and snap.status == "finished":
        _draw_curve(snap.result, p.info.name)
        return
    # No icons in alerts: a Material icon's name would be the first words of the alert's text.
    if snap is not None and snap.status == "failed":
        st.error(f"Measuring the curve failed: {snap.message}.")  # plain words; snap.error is for the log
    elif snap is not None and snap.status == "cancelled":
        st.warning(f"The measurement was {snap.message}.")
    calls = len(samplers) * sum(grid) * num_samples
    st.info(f"No stored curve for these settings. Measuring it runs the UNet {calls:,} times in the background "
            "(you can switch tabs meanwhile); the result is cached for every session.")
    if st.button("Compute", type="primary", key="dif_sq_compute", icon=":material/play_arrow:"):
        task = start_task(key, partial(_measure_and_save, m, p.info.path, samplers, grid, num_samples, seed),
                          title=f"steps against quality of {p.info.name}")
        tasks[key] = task.id
        st.rerun()


# -- attention ------------------------------------------------------------------------------------------
def _labels(model, label: int | None) -> torch.Tensor | None:
    return torch.tensor([label]) if model.conditional and label is not None else None


@st.cache_data(show_spinner=False, max_entries=32)
def _attention_layout(path: str, mtime: float, image: np.ndarray, t: int, seed: int, label: int | None,
                      _model) -> dict[str, tuple[int, int]]:
    """{block name: (heads, tokens)} of the model's attention layers, from one real forward pass."""
    maps = _model.attention_maps(torch.from_numpy(image), t, _labels(_model, label),
                                 generator=torch.Generator().manual_seed(seed))
    return {name: (probs.shape[0], probs.shape[1]) for name, probs in maps.items()}


@st.cache_data(show_spinner=False, max_entries=64)
def _attention_of_query(path: str, mtime: float, image: np.ndarray, query: tuple[int, int], timesteps: tuple[int, ...],
                        seed: int, label: int | None, _model) -> dict[str, np.ndarray]:
    """{block name: (len(timesteps), heads, h, w)}: where the query pixel attends at each timestep."""
    maps = _model.attention_over_time(torch.from_numpy(image), query, timesteps, _labels(_model, label),
                                      generator=torch.Generator().manual_seed(seed))
    return {name: a.numpy() for name, a in maps.items()}


def _take_click() -> None:
    """Move the query to a newly clicked pixel (before the row/column inputs are drawn).

    A selection stays in the chart's state over reruns; only one not applied yet moves the query,
    so typing a row or column afterwards is not undone by the old click.
    """
    state = st.session_state.get("dif_attn_click")
    points = (state or {}).get("selection", {}).get("points", [])
    if not points:
        return
    clicked = (int(round(points[0]["y"])), int(round(points[0]["x"])))
    if clicked != st.session_state.get("dif_attn_applied"):
        st.session_state["dif_attn_applied"] = clicked
        st.session_state["dif_attn_row"], st.session_state["dif_attn_col"] = clicked


def attention_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    if not m.has("attention"):
        st.info("This model's UNet has no attention layers (it was built with attention off), so there are no "
                "attention maps to show.")
        return
    if not digits_fit(m):
        st.warning("This tab works on the 28x28 test digits; this model draws images of another shape.")
        return
    _, height, width = m.image_shape
    _take_click()
    controls, view = st.columns([1, 2], gap="large")
    with controls:
        x0, label = test_digit_input("dif_attn_digit")
        t = st.slider("Timestep t", 0, m.num_train_timesteps - 1, m.num_train_timesteps // 2, key="dif_attn_t")
        image = x0.numpy()
        layout = _attention_layout(p.path, p.mtime, image, t, seed, label, m)
        if st.session_state.get("dif_attn_block") not in layout:
            st.session_state.pop("dif_attn_block", None)
        block = st.selectbox("Attention block", list(layout), key="dif_attn_block",
                             format_func=lambda b: f"{b} ({int(round(layout[b][1] ** 0.5))}² tokens)")
        heads = layout[block][0]
        if st.session_state.get("dif_attn_head", 0) >= heads:
            st.session_state["dif_attn_head"] = 0
        head = st.radio("Head", list(range(heads)), horizontal=True, key="dif_attn_head")
        row_col = st.columns(2)  # defaults set through session state, where a click also writes them
        st.session_state.setdefault("dif_attn_row", height // 2)
        st.session_state.setdefault("dif_attn_col", width // 2)
        row = int(row_col[0].number_input("Query row", 0, height - 1, key="dif_attn_row"))
        col = int(row_col[1].number_input("Query column", 0, width - 1, key="dif_attn_col"))
        noisy = m.noisy_at(x0, t, generator=torch.Generator().manual_seed(seed))
        st.image(grid_png(torch.cat([x0, noisy.cpu()]), nrow=2, scale=4), output_format="PNG",
                 caption=f"the digit (a {label}) and x_t at t = {t}, what the UNet sees")
    row_timesteps = tuple(int(v) for v in np.linspace(0, m.num_train_timesteps - 1, ROW_TIMESTEPS).round())
    over_time = _attention_of_query(p.path, p.mtime, image, (row, col), (t, *row_timesteps), seed, label, m)
    maps = over_time[block][:, head]                                   # (1 + ROW_TIMESTEPS, h, w)
    with view:
        st.plotly_chart(attention_click_figure(image[0, 0], maps[0], (row, col)), key="dif_attn_click",
                        on_select="rerun", selection_mode="points", width="content")
        st.caption(f"Where pixel (row {row}, column {col}) looks in {block}, head {head}, at t = {t}: the "
                   f"share of its attention on each of the block's {maps.shape[1]}x{maps.shape[2]} tokens "
                   "(brighter = more). "
                   "Click any pixel to query it.")
    st.plotly_chart(attention_row_figure(maps[1:], row_timesteps, (row, col), (height, width)), key="dif_attn_time")
    st.caption("The same query across the reverse process (same noise): near t = 0 the model sees a clean digit; "
               "near T it sees almost pure noise.")


# -- editing --------------------------------------------------------------------------------------------
def _edit_source() -> tuple[torch.Tensor | None, int | None, str]:
    """(image (1,1,28,28), its true digit or None, an id for cache keys) from a test digit or an upload."""
    source = st.radio("Image", ["a test digit", "my own image"], horizontal=True, key="dif_edit_source")
    if source == "a test digit":
        x0, label = test_digit_input("dif_edit_digit")
        return x0, label, f"test-{st.session_state['dif_edit_digit']}"
    x0, digest = uploaded_digit("dif_upload")
    return x0, None, digest


def editing_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    if not digits_fit(m):
        st.warning("Editing works on 28x28 digits; this model draws images of another shape.")
        return
    mode = st.radio("Edit", ["Inpainting (RePaint)", "SDEdit"], horizontal=True, key="dif_edit_mode")
    source_col, settings_col = st.columns(2, gap="large")
    with source_col:
        x0, label, source_id = _edit_source()
    with settings_col:
        copies = st.slider("Results (different noise each)", 1, 8, 4, key="dif_edit_copies")
        target, guidance = None, None
        if m.conditional:
            target = st.selectbox("Digit to draw", range(m.num_classes), index=label or 0, key="dif_edit_class",
                                  help="The class the model is told; try another digit than the image shows.")
            guidance = guidance_input(m, "dif_edit_guidance")
        if mode.startswith("Inpainting"):
            kind = st.selectbox("Mask", MASK_KINDS, key="dif_mask_kind",
                                help="half: the bottom half is missing; box: a random square; random: scattered pixels")
            fraction = st.slider("Missing pixels", 0.1, 0.9, 0.5, 0.1, key="dif_mask_fraction",
                                 disabled=kind != "random")
            steps = int(st.number_input("DDPM steps", 1, m.num_train_timesteps, min(100, m.num_train_timesteps),
                                        key="dif_inpaint_steps"))
            jump = int(st.number_input("Resampling (RePaint jump_n)", 1, 5, 1, key="dif_jump",
                                       help="Repeat each step this many times so the filled part agrees with the "
                                            "known part; costs as many times the UNet calls."))
            settings = ("inpaint", p.path, p.mtime, source_id, copies, target, guidance, kind, fraction, steps, jump,
                        seed)
            clicked = st.button("Inpaint", type="primary", key="dif_inpaint_run", icon=":material/brush:",
                                disabled=x0 is None)
        else:
            strength = st.slider("Strength", 0.05, 1.0, 0.5, 0.05, key="dif_sde_strength",
                                 help="How far to noise the image before denoising it: low keeps the strokes, "
                                      "high keeps only the rough shape.")
            sampler = st.selectbox("Sampler", list(SAMPLERS), index=list(SAMPLERS).index("ddim"), key="dif_sde_sampler")
            steps = int(st.number_input("Steps", 1, m.num_train_timesteps, min(50, m.num_train_timesteps),
                                        key="dif_sde_steps"))
            settings = ("sdedit", p.path, p.mtime, source_id, copies, target, guidance, strength, sampler, steps, seed)
            clicked = st.button("Run SDEdit", type="primary", key="dif_sde_run", icon=":material/auto_fix_high:",
                                disabled=x0 is None)
    if x0 is None:
        st.info("Upload an image above to edit it.")
        return
    labels = None if target is None else torch.full((copies,), target)
    batch = x0.repeat(copies, 1, 1, 1)
    if clicked:
        gen = torch.Generator().manual_seed(seed)
        if settings[0] == "inpaint":
            mask = make_mask(kind, tuple(x0.shape), generator=gen, fraction=fraction)   # (1,1,H,W), one mask for all
            out = m.inpaint(batch, mask.repeat(copies, 1, 1, 1), steps, gen, step_progress("Inpainting"),
                            labels=labels, jump_n=jump, guidance_scale=guidance)
            shown_input = x0 * mask + 0.5 * (1 - mask)  # missing pixels drawn mid-grey
        else:
            on_step, first = step_progress("SDEdit"), []

            def keep_first(step) -> None:  # the noised image the denoising starts from
                if not first:
                    first.append(step.state[:1].cpu())
                on_step(step)

            out = m.sdedit(batch, strength, steps, gen, sampler, labels=labels, callback=keep_first,
                           guidance_scale=guidance)
            shown_input = first[0] if first else x0
        remember("dif_edits", settings, {"input": grid_png(shown_input, 1, scale=5),
                                         "result": grid_png(out.cpu(), min(copies, 4), scale=5)})
        st.rerun()  # redraw without the finished progress bar
    done = recall("dif_edits", settings)
    cols = st.columns([1, 1, 2])
    cols[0].image(grid_png(x0, 1, scale=5), caption="original", output_format="PNG")
    if done is None:
        button = "Inpaint" if settings[0] == "inpaint" else "Run SDEdit"
        cols[1].info(f"Press **{button}** to see the input the model starts from and its results.")
        return
    cols[1].image(done["input"], output_format="PNG",
                  caption="masked input (grey = to fill)" if settings[0] == "inpaint" else "noised input")
    what = "inpainted" if settings[0] == "inpaint" else "SDEdit results"
    cols[2].image(done["result"], caption=f"{what} · seed {seed}", output_format="PNG")
    with cols[2]:
        download_png(done["result"], f"{p.info.name}-{settings[0]}-seed{seed}.png", key="dif_dl_edit")
