"""Restore photos: denoising and super-resolution of any photo, classical methods against learned ones.

Pick a bundled photo or upload your own; add noise with a seed (so there is a clean reference and
PSNR/SSIM) or treat it as already noisy (its noise level is estimated); run scikit-image's methods,
BM3D and the learned denoiser side by side, each in the background, and compare them with a
before/after slider, a synchronised zoom and a difference map. Super-resolution shrinks the photo
so it is its own reference. The maths is in genlib's restoration package; the parts of this page
are in pages/restore/. Session-state keys start with ``rst_``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

import genlib
from genlib import background
from genlib.data import (HELD_OUT_PHOTOS, PHOTO_UPLOAD_FORMATS, UploadError, bundled_photo, format_names,
                         load_photo_upload, mnist, photo_names, photo_png, upload_types)
from genlib.families.restoration import classical, restore
from genlib.model import PHOTOS
from pages._panels import train_panel
from pages._ui import (caps, demo_caption, global_seed, model_tabs, page_families, require_router, visible_checkpoints,
                       watch)
from pages.restore.views import before_after, difference, metrics_figure, zoom_row

require_router()

FAMILIES = page_families(__file__)
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "max_steps", "preview_every")
TRAIN_DEFAULTS = {"epochs": 5, "batch_size": 32, "lr": 1e-3, "max_steps": 300, "preview_every": 50}


# -- the photo ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Photo:
    """The photo a visitor works on, (H,W,C) in [0,1], its file stem, and a short key naming its content
    (no colons), so caches and background results are keyed without hashing megapixels on every rerun."""

    image: np.ndarray
    stem: str
    key: str


@st.cache_data(show_spinner="Reading the photo…", max_entries=8)
def _decoded(data: bytes, max_pixels: int, max_bytes: int):
    return load_photo_upload(data, max_pixels=max_pixels, max_bytes=max_bytes), hashlib.sha256(data).hexdigest()[:16]


def photo_input() -> Photo | None:
    """The photo to work on, from the bundled set, a test digit or an upload."""
    left, right = st.columns([1, 2])
    source = left.radio("Photo", ["A bundled photo", "Upload your own", "A test digit (28x28)"], key="rst_source")
    with right:
        if source == "A bundled photo":
            name = st.selectbox("Bundled photo", photo_names(), key="rst_photo",
                                format_func=lambda n: f"{n} · held out (never trained on)" if n in HELD_OUT_PHOTOS
                                else f"{n} · a training photo")
            return Photo(bundled_photo(name), name, f"bundled-{name}")
        if source.startswith("A test digit"):
            index = int(st.number_input("Test digit (index into the 1,000 test digits)", 0, 999, 0, key="rst_digit"))
            st.caption("For digits the lab's own models join in: the denoising autoencoder and the diffusion "
                       "model run from the matching noise level.")
            return Photo(mnist().test_images[index, 0].numpy()[..., None].copy(), f"digit{index}", f"digit-{index}")
        upload = st.file_uploader(f"{format_names(PHOTO_UPLOAD_FORMATS)}; colour or grey, 8 or 16 bit",
                                  type=upload_types(PHOTO_UPLOAD_FORMATS), key="rst_upload")
        if upload is None:
            st.info(f"Upload a photo. Above {caps().upload_pixels / 1e6:g} megapixels it is downscaled for this page "
                    "(the command line restores any size, in tiles).")
            demo_caption("upload_bytes", "upload_pixels")
            return None
        try:
            loaded, digest = _decoded(upload.getvalue(), caps().upload_pixels, caps().upload_bytes)
        except UploadError as err:
            st.error(f"That file cannot be used: {err}.")
            return None
        h, w = loaded.image.shape[:2]
        said = [*loaded.notes]
        if loaded.downscaled:
            said.append(f"downscaled from {loaded.original_size[0]}x{loaded.original_size[1]} to {w}x{h} "
                        f"(this page works on at most {caps().upload_pixels / 1e6:g} megapixels)")
        st.caption(f"{w}x{h}, {'grey' if loaded.image.shape[2] == 1 else 'colour'}" +
                   ("; " + "; ".join(said) if said else ""))
        return Photo(loaded.image, upload.name.rsplit(".", 1)[0], f"upload-{digest}")


# The photo is passed as ``_image`` (not hashed by st.cache_data); ``key`` names it.
@st.cache_data(max_entries=16, show_spinner=False)
def _noisy(_image: np.ndarray, key: str, kind: str, level: float, seed: int) -> np.ndarray:
    return classical.add_noise(_image, kind, level, seed)


@st.cache_data(max_entries=32, show_spinner="Estimating the noise level…")
def _estimated_sigma(_image: np.ndarray, key: str) -> float:
    return classical.estimate_sigma(_image)


@st.cache_data(max_entries=8, show_spinner=False)
def _shrunk(_image: np.ndarray, key: str, scale: int) -> np.ndarray:
    return classical.downscale(_image, scale)


# -- running methods in the background ---------------------------------------------------------------------
def _learned(ability: str, scale: int | None = None) -> list[str]:
    """Checkpoint names of learned restorers with ``ability`` (shipped first, then the user's runs)."""
    families = {name for name, cls in genlib.all_families().items()
                if cls.data_kind == PHOTOS and ability in cls.abilities}
    infos = [i for i in visible_checkpoints() if i.family in families
             and (scale is None or i.model_config.get("scale", 2) == scale)]
    return [str(i.path) if i.origin == "run" else i.name for i in sorted(infos, key=lambda i: i.origin != "shipped")]


def _run(job, report, cancel):
    """A task's body (a worker thread): one method, timed while it has the CPU to itself."""
    report(0.0, "waiting for another method to finish" if restore.RUN_LOCK.locked() else "running")
    with restore.RUN_LOCK:
        report(0.05, "running")
        return job(progress=report)


def results_for(kind: str, key_base: str, methods: list[str], make_job) -> dict[str, restore.Result]:
    """Finished results of ``methods``; starts the missing ones in the background on "Restore", watches them."""
    tasks = st.session_state.setdefault("rst_tasks", {})
    done, running, failed = {}, [], {}
    for method in methods:
        work = background.get(tasks.get(f"{key_base}:{method}"))
        snap = work.snapshot() if work is not None else None
        if snap is not None and snap.status == "finished":
            done[method] = snap.result
        elif snap is not None and snap.running:
            running.append(snap.id)
        elif snap is not None:
            failed[method] = snap.message
    missing = [m for m in methods if m not in done and f"{key_base}:{m}" not in tasks or m in failed]
    if missing and st.button("Restore" if kind == "denoise" else "Upscale", type="primary", key=f"rst_go_{kind}",
                             icon=":material/auto_fix_high:", help="Runs each method in the background, one at a time"):
        for method in missing:
            work = background.start_task(f"restore:{key_base}:{method}", partial(_run, make_job(method)),
                                         title=f"{kind} with {method}")
            tasks[f"{key_base}:{method}"] = work.id
        st.rerun()
    for method, message in failed.items():
        st.error(f"**{method}** failed: {message}")
    if running:
        watch(running, _progress_rows)
    return done


def _progress_rows(snaps) -> None:
    for snap in snaps:
        bar, button = st.columns([6, 1], vertical_alignment="bottom")
        bar.progress(snap.fraction, text=f"{snap.title}… {snap.message}")
        if button.button("Cancel", key=f"rst_cancel_{snap.id}"):
            background.get(snap.id).cancel()


# -- showing the results ---------------------------------------------------------------------------------------
def show_results(results: dict[str, restore.Result], degraded: np.ndarray, reference: np.ndarray | None,
                 degraded_name: str, stem: str, kind: str) -> None:
    """Metrics table and chart, slider, synchronised zoom, difference map and downloads."""
    rows = []
    for method, result in results.items():
        row = {"method": method, "seconds": round(result.seconds, 2)}
        if reference is not None:
            row["PSNR (dB)"], row["SSIM"] = (round(v, 4) for v in classical.psnr_ssim(result.image, reference))
        rows.append(row)
    table = pd.DataFrame(rows)
    if reference is not None:
        table = table.sort_values("PSNR (dB)", ascending=False)
        if kind == "denoise":
            base = classical.psnr_ssim(degraded, reference)
            st.caption(f"The {degraded_name} photo itself: {base[0]:.2f} dB, SSIM {base[1]:.3f}.")
    left, right = st.columns([2, 3])
    left.dataframe(table, hide_index=True)
    if reference is not None:
        right.plotly_chart(metrics_figure(table), key=f"rst_chart_{kind}")
    best = table["method"].iloc[0]
    shown = st.selectbox(f"Slider: the {degraded_name} photo against", list(table["method"]),
                         key=f"rst_pick_{kind}_{len(results)}", index=list(table["method"]).index(best))
    before = degraded if degraded.shape == results[shown].image.shape else _nearest_up(degraded, results[shown].image)
    before_after(before, results[shown].image, (degraded_name, shown), key=f"rst_slider_{kind}")
    st.markdown("**Zoom** (the same region of every result)")
    a, b, c = st.columns(3)
    cx = a.slider("Across (%)", 0, 100, 50, key=f"rst_zx_{kind}") / 100
    cy = b.slider("Down (%)", 0, 100, 50, key=f"rst_zy_{kind}") / 100
    size = c.select_slider("Window (pixels)", [32, 48, 64, 96, 128, 192], 64, key=f"rst_zs_{kind}")
    panels = [(degraded_name, before)] + ([("clean reference", reference)] if reference is not None else [])
    panels += [(m, results[m].image) for m in table["method"]]
    zoom_row(panels, (cx, cy), size, max(1, 256 // size))
    if st.toggle("Difference map (×4)", key=f"rst_diff_{kind}",
                 help="Against the clean reference where there is one; otherwise what each method removed."):
        base = reference if reference is not None else before
        zoom_row([(m, difference(results[m].image, base)) for m in table["method"]], (cx, cy), size,
                 max(1, 256 // size))
    cols = st.columns(min(4, len(results) + 1))
    cols[0].download_button("Metrics (CSV)", table.to_csv(index=False), file_name=f"{stem}-{kind}-metrics.csv",
                            mime="text/csv", key=f"rst_csv_{kind}", on_click="ignore", icon=":material/download:")
    for i, method in enumerate(table["method"]):
        cols[(i + 1) % len(cols)].download_button(
            f"{method} (PNG)", data=photo_png(results[method].image), mime="image/png", on_click="ignore",
            file_name=f"{stem}-{kind}-{method.rsplit('/', 1)[-1]}.png", key=f"rst_dl_{kind}_{i}",
            icon=":material/download:")


def _nearest_up(small: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``small`` enlarged to ``like``'s size by repeating pixels, to sit under the slider."""
    fy, fx = like.shape[0] // small.shape[0], like.shape[1] // small.shape[1]
    return np.repeat(np.repeat(small, fy, axis=0), fx, axis=1)[:like.shape[0], :like.shape[1]]


# -- the tabs --------------------------------------------------------------------------------------------------
def denoise_tab(photo: Photo) -> None:
    image, stem = photo.image, photo.stem
    settings, main = st.columns([1, 3], gap="large")
    with settings:
        mode = st.radio("Noise", ["Add noise (a clean reference: PSNR and SSIM)", "It is already noisy (blind)"],
                        key="rst_mode")
        sigma = None
        if mode.startswith("Add"):
            kind = st.selectbox("Kind", list(classical.NOISE_KINDS), key="rst_noise_kind")
            about, (lo, hi), default = classical.NOISE_KINDS[kind]
            level = st.slider(about, float(lo), float(hi), float(default), key=f"rst_level_{kind}")
            content = f"{photo.key}-{kind}-{level:g}-{global_seed()}"
            noisy, reference = _noisy(image, content, kind, level, global_seed()), image
            sigma = level / 255 if kind == "gaussian" else None
            st.caption(f"Seed {global_seed()} (the global seed). " +
                       ("The classical methods are given the true σ." if sigma is not None else
                        "The classical methods estimate the noise level."))
        else:
            content, noisy, reference = photo.key, image, None
        st.metric("Estimated noise σ (0-255)", f"{_estimated_sigma(noisy, content) * 255:.1f}")
        options = [*classical.DENOISERS, *_learned("denoise")]
        digit = image.shape == (28, 28, 1)
        if digit:  # a digit: the lab's digit models can denoise it too
            options += [n for n in restore.DIGIT_DENOISERS if n in {i.name for i in visible_checkpoints()}]
        wanted = ("nl-means", *restore.DIGIT_DENOISERS) if digit else ("wavelet", "nl-means", restore.SHIPPED_DENOISER)
        default = [m for m in wanted if m in options]
        methods = st.multiselect("Methods", options, default=default,
                                 key="rst_methods_digit" if digit else "rst_methods",
                                 help="bm3d is the strongest classical method and the slowest (about 33 s per "
                                      "megapixel on a 2-core CPU; benchmarks/restoration.md).")
    with main:
        if not methods:
            st.info("Choose at least one method.")
            return
        key_base = f"denoise:{content}:{sigma}"
        results = results_for("denoise", key_base, methods,
                              lambda m: partial(restore.denoise, m, noisy, sigma))
        if results:
            show_results(results, noisy, reference, "noisy", stem, "denoise")
        else:
            st.info("Press **Restore** to run the chosen methods on this photo.")


def upscale_tab(photo: Photo) -> None:
    image, stem = photo.image, photo.stem
    settings, main = st.columns([1, 3], gap="large")
    with settings:
        scale = st.radio("Scale", [2, 4], format_func=lambda s: f"x{s}", horizontal=True, key="rst_scale")
        measure = st.toggle("Measure: shrink the photo first, so it is its own reference", value=True,
                            key="rst_measure")
        options = [*classical.UPSCALERS, *_learned("upscale", scale)]
        methods = st.multiselect("Methods", options, default=options[:3], key=f"rst_sr_methods_{scale}")
    low = _shrunk(image, photo.key, scale) if measure else image
    reference = image[:low.shape[0] * scale, :low.shape[1] * scale] if measure else None
    with main:
        st.caption(f"Input {low.shape[1]}x{low.shape[0]} → output {low.shape[1] * scale}x{low.shape[0] * scale}" +
                   (" (the photo shrunk x{scale} with antialiased bicubic; PSNR and SSIM against the photo)"
                    .replace("{scale}", str(scale)) if measure else ""))
        if not methods:
            st.info("Choose at least one method.")
            return
        results = results_for("upscale", f"upscale:{photo.key}-{'shrunk' if measure else 'as-is'}:{scale}", methods,
                              lambda m: partial(restore.upscale, m, low, scale))
        if results:
            show_results(results, low, reference, "low-resolution", stem, "upscale")
        else:
            st.info("Press **Upscale** to run the chosen methods.")


def train_tab() -> None:
    st.caption("Train a denoiser (resunet or dncnn) or an upscaler (espcn) on 48x48 crops of the bundled training "
               "photos, never the held-out ones. The preview restores crops of the held-out photos; the curves show "
               "PSNR. A finished run appears in the Methods lists.")
    train_panel(FAMILIES, "rst", TRAIN_FIELDS, train_defaults=TRAIN_DEFAULTS)


st.title("Restore photos")
st.caption("Denoise or upscale any photo with scikit-image's methods, BM3D and learned CNNs, side by side: which "
           "wins, by how much, and at what cost.")
picked_photo = photo_input()
TABS = {"Denoise": denoise_tab, "Super-resolution": upscale_tab, "Train": train_tab}
model_tabs(TABS, "rst_tab", picked_photo, needs_no_model=(train_tab,), missing="Choose or upload a photo above.")
