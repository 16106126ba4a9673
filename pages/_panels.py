"""Whole panels that every family page shares: train a model in the background and watch its job
live (progress with ETA, curves, samples, Cancel), and a checkpoint's metrics and downloads. Built
from the widgets in ``pages._ui``; no model maths here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import genlib
from genlib import background, runs
from genlib.background import RunnerBusy, Snapshot, Work
from genlib.checkpoints import WEIGHTS_FILE, CheckpointError, read_history
from genlib.images import grid_png, to_png
from genlib.runs import JobView, preview_samples, start_training_job
from genlib.scoring import METRIC_BY_KEY, metric_title
from pages._ui import (GRID_SCALE, Picked, demo_caption, download_png, global_seed, loss_figure, progress_text,
                       select_checkpoint, visitor, visitor_token, watch)
from pages._widgets import config_widgets, keep_widget_state, make_config


def running_job(key_prefix: str) -> Work | None:
    """The job started from ``train_panel(key_prefix=...)`` in this session while it runs, else None."""
    job = background.get(st.session_state.get(f"{key_prefix}_job_id"))
    return job if job is not None and not job.snapshot().done else None


def keep_train_variant(key_prefix: str) -> None:
    """Call before ``train_panel``: its Variant choice survives page visits, and a form coming back
    while a job runs shows the running job's variant, so it never shows one model while another trains."""
    job = running_job(key_prefix)
    keep_widget_state(f"{key_prefix}_train_family", pinned=job.snapshot().state.family if job is not None else None)


# -- background training jobs -------------------------------------------------------------------------
def _render_progress(snap: Snapshot) -> None:
    # The variant is named here: the form beside it may show another one (after its job ended).
    view: JobView = snap.state
    family = genlib.all_families().get(view.family)
    variant = f"Variant **{view.family}** ({family.description}) · " if family is not None else ""
    st.markdown(f"{variant}run **{snap.title}**")
    text = progress_text(snap) if snap.total_steps else "starting: loading data and building the model…"
    st.progress(min(1.0, snap.fraction), text=text)


LiveRenderer = Callable[[Snapshot, str], None]


def _render_live_results(snap: Snapshot, key_prefix: str) -> None:
    """The default live view: the latest sample grid and the loss curves."""
    view: JobView = snap.state
    if view.preview is not None:
        st.image(to_png(view.preview, scale=GRID_SCALE), caption=f"samples at step {view.preview_step}",
                 output_format="PNG")
    if view.history:
        st.plotly_chart(loss_figure(view.history, height=280), key=f"{key_prefix}_job_loss_{snap.id}")
    if snap.message and not snap.done:
        st.caption(snap.message)


def _live_job(snaps: list[Snapshot], key_prefix: str, render: LiveRenderer) -> None:
    """A running job's live panel, redrawn every second by ``watch``."""
    snap = snaps[0]
    _render_progress(snap)
    if st.button("Cancel", key=f"{key_prefix}_cancel_{snap.id}", icon=":material/stop:"):
        background.get(snap.id).cancel()
        st.caption("Cancelling after the current step…")
    render(snap, key_prefix)


def job_panel(job_id: str, key_prefix: str, picker_key: str | None = None,
              render: LiveRenderer = _render_live_results) -> Snapshot | None:
    """Show a training job: progress with ETA, live loss curves, the live sample grid, Cancel.

    While the job runs, ``watch`` polls the background runner every second (the worker thread
    never touches Streamlit). When it ends, the page reruns once and draws the final state
    statically with a success / warning / error message and, given the ``picker_key`` of a
    ``checkpoint_picker``, an "Open this run" button. ``render`` draws the job's results (a
    family's page passes its own). Returns the snapshot (None if unknown).
    """
    job = background.get(job_id)
    if job is None:
        st.info("That training job is gone (the server was restarted). Start a new one.")
        return None
    snap = job.snapshot()
    if not snap.done:
        watch([job_id], lambda snaps: _live_job(snaps, key_prefix, render))
        return snap
    _render_progress(snap)
    path = snap.state.result_path
    if snap.status == "finished":
        # No icons in these alerts: a Material icon is a font ligature, so its name ("check_circle",
        # "cancel") would be the first words of the alert's text (innerText, copy and paste).
        st.success(f"Training finished: the run **{path.name}** was saved and is now in the model chooser.")
    elif snap.status == "cancelled":
        st.warning(f"Training was {snap.message}.")
    else:
        st.error(f"Training failed: {snap.message}")
    if picker_key and path is not None:
        st.button("Open this run", key=f"{key_prefix}_open_run", on_click=select_checkpoint,
                  args=(picker_key, path), icon=":material/open_in_new:")
    render(snap, key_prefix)
    return snap


def train_panel(family_names: Sequence[str], key_prefix: str, train_fields: Sequence[str],
                train_defaults: dict[str, Any] | None = None, render: LiveRenderer = _render_live_results,
                model_defaults: Callable[[str], dict[str, Any]] | None = None) -> None:
    """Settings generated from the chosen family's config on the left; the live job on the right.

    The job runs on the background runner (a worker thread), so switching tabs or pages does not stop it;
    the job id lives in ``{key_prefix}_job_id`` and the finished run opens in the picker
    ``{key_prefix}_model``.
    """
    families = genlib.all_families()
    job_id = st.session_state.get(f"{key_prefix}_job_id")
    running = running_job(key_prefix) is not None
    settings, panel = st.columns([2, 3], gap="large")
    with settings:
        keep_train_variant(key_prefix)  # the chosen (or running) variant survives a visit to another page
        family = st.selectbox("Variant", family_names, format_func=lambda f: f"{f} · {families[f].description}",
                              key=f"{key_prefix}_train_family")
        cls = families[family]
        st.markdown("**Model settings**")
        model_values = config_widgets(cls.Config, f"{key_prefix}_train_{family}", columns=2,
                                      defaults=model_defaults(family) if model_defaults else None)
        st.markdown("**Training settings**")
        train_values = config_widgets(genlib.TrainConfig, f"{key_prefix}_train", only=train_fields, columns=2,
                                      defaults=train_defaults)
        st.caption(f"The training seed is the global seed ({global_seed()}). Training runs in the background: "
                   "you can switch tabs or pages and come back.")
        demo_caption("train_steps", "train_seconds", "jobs_total", "jobs_per_session", "session_quota_bytes",
                     "session_ttl_s")
        if st.button("Start training", type="primary", key=f"{key_prefix}_start", disabled=running,
                     icon=":material/play_arrow:"):
            model_config = make_config(cls.Config, model_values)
            train_config = make_config(genlib.TrainConfig, {**train_values, "seed": global_seed()})
            if model_config is not None and train_config is not None:
                try:
                    job = start_training_job(family, model_config, train_config, workspace=visitor(),
                                             owner=visitor_token())
                except (RunnerBusy, genlib.ConfigError, CheckpointError) as err:
                    st.error(str(err))
                else:
                    st.session_state[f"{key_prefix}_job_id"] = job.id
                    st.rerun()  # redraw with the Start button disabled and the live panel
        if running:
            st.caption("Wait for this job to finish or cancel it before starting another.")
    with panel:
        if not job_id:
            st.info("Start a run to watch it here: progress with ETA, live loss curves and samples as it learns.")
            return
        job_panel(job_id, key_prefix, picker_key=f"{key_prefix}_model", render=render)


def weights_file(folder: Path) -> Path | None:
    """The checkpoint's safetensors weights: model.safetensors, or the one file of another layout
    (a diffusers pipeline keeps unet/diffusion_pytorch_model.safetensors); None when there is none."""
    if (folder / WEIGHTS_FILE).is_file():
        return folder / WEIGHTS_FILE
    found = sorted(p for p in folder.rglob("*.safetensors")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return found[0] if found else None


def _metric_value(key: str, value: Any) -> str:
    """A metrics.json value as the scoreboard writes it (its own format where it has one)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in METRIC_BY_KEY:
        return METRIC_BY_KEY[key].format.format(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_panel(p: Picked, key_prefix: str,
                  history_figure: Callable[[pd.DataFrame], go.Figure] = loss_figure) -> None:
    """metrics.json as a table, the loss log as a chart, and downloads of the checkpoint's files."""
    info = p.info
    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"**{info.name}** · {info.family} · {info.origin}")
        shown = {k: v for k, v in info.metrics.items() if not isinstance(v, (dict, list))}
        if shown:
            table = pd.DataFrame({"metric": [metric_title(k, info.metrics.get("likelihood")) for k in shown],
                                  "value": [_metric_value(k, v) for k, v in shown.items()]})
            st.table(table.set_index("metric"))
        else:
            st.info("This checkpoint has no metrics.json.")
    with right:
        try:
            history = read_history(info.path)
        except CheckpointError as err:
            st.warning(f"The loss log cannot be shown: {err}")
        else:
            if history is None or history.empty:
                st.info("This checkpoint has no loss log (history.csv.gz).")
            else:
                st.plotly_chart(history_figure(history), key=f"{key_prefix}_metrics_loss")
                # a callable: the CSV text is made on click, not on every rerun of the tab
                st.download_button("Loss log (CSV)", data=lambda: history.to_csv(index=False),
                                   file_name=f"{info.name}-history.csv", mime="text/csv",
                                   key=f"{key_prefix}_dl_history", on_click="ignore", icon=":material/download:",
                                   help=f"one row per training step, {len(history):,} rows")
    cols = st.columns(4)
    if p.model.trained_data().tokens:  # a text model's preview is its samples.txt
        samples_text = info.preview_text or runs.samples_text(p.model, preview_samples(p.model)[0])
        cols[0].download_button("Samples (text)", data=samples_text, file_name=f"{info.name}-samples.txt",
                                mime="text/plain", key=f"{key_prefix}_dl_preview", on_click="ignore",
                                icon=":material/download:")
    else:
        if info.preview:
            samples_png = info.preview.read_bytes()
        else:
            images, nrow = preview_samples(p.model)
            samples_png = grid_png(images, nrow)
        with cols[0]:
            download_png(samples_png, f"{info.name}-samples.png", key=f"{key_prefix}_dl_preview",
                         label="Sample grid (PNG)")
    weights = weights_file(info.path)
    if weights is not None:
        cols[1].download_button("Weights (safetensors)", data=weights.read_bytes, file_name=f"{info.name}.safetensors",
                                mime="application/octet-stream", key=f"{key_prefix}_dl_weights", on_click="ignore",
                                icon=":material/download:", help=f"{weights.relative_to(info.path)} of the checkpoint")
    cols[2].download_button("Metrics (CSV)", data=pd.DataFrame([shown]).to_csv(index=False),
                            file_name=f"{info.name}-metrics.csv", mime="text/csv", key=f"{key_prefix}_dl_metrics",
                            on_click="ignore", icon=":material/download:")
    config_text = json.dumps({"family": info.family, "model": info.model_config, "train": info.train_config},
                             indent=2)
    cols[3].download_button("config.json", data=config_text, file_name=f"{info.name}-config.json",
                            mime="application/json", key=f"{key_prefix}_dl_config", on_click="ignore",
                            icon=":material/download:")
