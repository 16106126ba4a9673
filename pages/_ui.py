"""Shared widgets for every page: cached loaders, generated config forms, the checkpoint picker,
image grids and downloads, loss curves and lazy tabs. The panels built from them (training jobs,
metrics) are in pages/_panels.py.

Pages import from here (``from pages._ui import ...``; Streamlit puts the repo root on sys.path).
Nothing here does model maths: that lives in genlib. The leading underscore keeps this module
out of the page list.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

import genlib
from genlib import background
from genlib.background import Snapshot, plain_error
from genlib.checkpoints import (CONFIG_FILE, REPO_ROOT, WEIGHTS_FILE, CheckpointError, CheckpointInfo, is_local_folder,
                                read_info, resolve)
from genlib.demo import Limits, apply_thread_limit, demo_mode, limits
from genlib.images import grid_png
from genlib.model import GenerativeModel
from genlib.training import pick_device
from genlib.workspace import Workspace, new_token, sweep

GRID_SCALE = 3  # on-screen enlargement of 28x28 digits (nearest neighbour, crisp)


# -- routing ------------------------------------------------------------------------------------------
def require_router() -> None:
    """Call first in every page: make sure the page runs inside streamlit_app.py's router.

    Streamlit treats a folder named ``pages/`` next to the entry script as an old-style multipage
    app until some script run in the process has called ``st.navigation``. On a freshly started
    server, a first request for a page URL (say /autoencoders), and every AppTest run after the
    first, would run the page on its own: no page config, no shared sidebar, and ``_ui`` listed
    as a page. This switches that mode off and reruns, so the router runs; so does a run that began in
    that mode while another first visitor's run switched it off (``_run_outside_the_router``). A no-op otherwise
    (and if a future Streamlit drops the flag). Not under AppTest: it resets the flag before
    every run, and a rerun there would drop the button click being tested.
    """
    from streamlit import config

    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - layout of a future Streamlit
        return
    if config.get_option("global.appTest"):
        return
    if getattr(PagesManager, "uses_pages_directory", False) or _run_outside_the_router():
        PagesManager.uses_pages_directory = False
        st.rerun()


def _run_outside_the_router() -> bool:
    """Whether this script run began in the old pages-folder mode although the flag is off now: two
    first visitors at once on a fresh server, where the other's run switched it off after this one had
    started (this one would draw without the sidebar until its next rerun). That mode lists the entry
    script itself as a page; the router's st.navigation never does."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    try:
        manager = ctx.pages_manager
        main = Path(manager.main_script_path).resolve()
        return any(Path(page["script_path"]).resolve() == main for page in manager.get_pages().values())
    except (AttributeError, KeyError, TypeError):  # no script run, or a future Streamlit's layout
        return False


# -- demo mode: caps and each visitor's own folder ---------------------------------------------------------
VISITOR_KEY = "demo_visitor_token"   # plain session state: the browser session's random token


def caps() -> Limits:
    """The limits in force (genlib.demo): the hosted demo's in demo mode, else the lab's own."""
    return limits()


@st.cache_resource
def _process_setup() -> bool:
    """Once per server process: cap torch's CPU threads."""
    apply_thread_limit()
    return True


def start_session() -> None:
    """Call once per script run (the router does): the thread cap, and in demo mode the visitor's
    folder with expired ones swept away when the visitor is new."""
    _process_setup()
    if demo_mode() and VISITOR_KEY not in st.session_state:
        sweep(caps().session_ttl_s)
        st.session_state[VISITOR_KEY] = new_token()
    if demo_mode():
        visitor().touch()


def visitor() -> Workspace | None:
    """This browser session's private workspace in demo mode; None outside it (runs go to runs/)."""
    if not demo_mode():
        return None
    token = st.session_state.setdefault(VISITOR_KEY, new_token())
    ws = st.session_state.get("demo_workspace")
    if ws is None or ws.root.name != token:
        ws = st.session_state["demo_workspace"] = Workspace.for_token(token, caps().session_quota_bytes)
    return ws


def visitor_token() -> str | None:
    """Who owns this session's background jobs in demo mode (None outside it: one shared lab)."""
    return st.session_state.get(VISITOR_KEY) if demo_mode() else None


def visible_checkpoints(**kwargs: Any) -> list[CheckpointInfo]:
    """The checkpoints this visitor may see: shipped ones, then their own runs (everyone's runs/ outside
    demo mode)."""
    ws = visitor()
    return genlib.list_checkpoints(runs=ws.runs if ws is not None else None, **kwargs)


def check_source(source: str) -> None:
    """CheckpointError when this visitor may not load a typed source (demo mode only: shipped models,
    their own runs, and hub ids when the hub is on)."""
    ws = visitor()
    if ws is not None:
        ws.allows(source, hub=caps().hub)


def load_typed_source(source: str, failure_key: str, load: Callable[[str], Any]) -> Any | None:
    """``load(source)`` for a folder or hub id the visitor typed; None after showing why it failed.

    A failure is remembered under ``failure_key`` for that source: a hub id that failed (offline,
    unknown, refused) is not downloaded again on every rerun. A local folder is always retried, as
    the visitor may have just fixed it.
    """
    failed = st.session_state.get(failure_key)
    if failed and failed[0] == source and not is_local_folder(source):
        st.error(failed[1])
        return None
    try:
        check_source(source)
        loaded = load(source)
    except (CheckpointError, OSError, ValueError) as err:
        message = plain_error(err) if isinstance(err, OSError) else str(err)
        st.session_state[failure_key] = (source, message)
        st.error(message)
        return None
    st.session_state.pop(failure_key, None)
    return loaded


def demo_caption(*names: str) -> None:
    """State the named caps (genlib.demo.Limits fields) where they apply; nothing outside demo mode."""
    if demo_mode() and (text := caps().summary(*names)):
        st.caption(f":material/public: Hosted demo limits: {text}.")


# -- device, seed, families ---------------------------------------------------------------------------
@st.cache_resource
def device_label() -> str:
    """'CUDA · <GPU name>' or 'CPU': where models run in this app."""
    device = pick_device("auto")
    if device.type == "cuda":
        return f"CUDA · {torch.cuda.get_device_name(device)}"
    return "CPU"


def global_seed() -> int:
    """The seed chosen in the shared sidebar (0 before the sidebar has run)."""
    return int(st.session_state.get("global_seed", 0))


def page_families(page_file: str) -> list[str]:
    """Names of the registered families that declare ``page_file`` (a page passes ``__file__``) as their page."""
    page = Path(page_file).resolve()
    return [name for name, cls in genlib.all_families().items()
            if cls.page and (REPO_ROOT / cls.page).resolve() == page]


# -- background work ------------------------------------------------------------------------------------
def _watched(work_ids: tuple[str, ...], draw: Callable[[list[Snapshot]], None]) -> None:
    snaps = [work.snapshot() for work_id in work_ids if (work := background.get(work_id)) is not None]
    if len(snaps) < len(work_ids) or any(not snap.running for snap in snaps):
        st.rerun()  # one has ended (or paused): the full run draws its final state once, without polling
    draw(snaps)


def watch(work_ids: Sequence[str], draw: Callable[[list[Snapshot]], None], every: float = 1.0) -> None:
    """The one polling fragment of the app: redraw running background work every ``every`` seconds.

    ``draw(snapshots)`` draws their live state (progress, curves, a Cancel button). As soon as one
    of them ends or pauses, the whole page reruns once and draws it without this fragment, so
    work that is not running costs nothing. The worker threads never touch Streamlit.
    """
    st.fragment(_watched, run_every=every)(tuple(work_ids), draw)


def progress_text(snap: Snapshot) -> str:
    """'step 40/200 · ETA 00:12' (or the fraction) while running; how long it took once ended."""
    done = f"{snap.status} after {mmss(snap.elapsed_s)}" if snap.done else f"ETA {mmss(snap.eta_s)}"
    if snap.total_steps:
        return f"step {snap.step}/{snap.total_steps} · {done}"
    return f"{snap.fraction:.0%} · {snap.message} · {done}" if not snap.done else done


def mmss(seconds: float | None) -> str:
    """Seconds as mm:ss ("--:--" when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


# -- cached loaders ---------------------------------------------------------------------------------
def checkpoint_mtime(folder: str | Path) -> float:
    """Newest modification time of a checkpoint's config and weights: part of every cache key,
    so a run saved again under the same name is reloaded."""
    folder = Path(folder)
    times = [(folder / f).stat().st_mtime for f in (CONFIG_FILE, WEIGHTS_FILE) if (folder / f).exists()]
    return max(times, default=0.0)


@st.cache_resource(show_spinner="Loading checkpoint…", max_entries=12)
def load_cached(path_str: str, mtime: float) -> tuple[GenerativeModel, CheckpointInfo]:
    """(model in eval mode, info) for a checkpoint folder, shared by all sessions.

    Never call ``.train()`` or ``.to()`` on the returned model and never change its weights:
    other sessions use the same object. Sampling passes its own ``torch.Generator``.
    ``mtime`` only keys the cache. Errors (CheckpointError) are not cached.
    """
    return genlib.load_model(path_str, device=pick_device("auto"))


@dataclass(frozen=True)
class Picked:
    """The model a page works on, with what identifies it in cache keys."""

    model: GenerativeModel
    info: CheckpointInfo
    mtime: float

    @property
    def path(self) -> str:
        return str(self.info.path)


# -- checkpoint picker --------------------------------------------------------------------------------
def _option_label(info: CheckpointInfo) -> str:
    fd = info.metrics.get("frechet_distance")
    score = f" · FD {fd:.1f}" if isinstance(fd, (int, float)) else ""
    return f"{info.name} · {info.family} · {info.origin}{score}"


def select_checkpoint(key: str, path: str | Path) -> None:
    """Callback: make the picker with ``key`` show the checkpoint at ``path`` on the next run."""
    st.session_state[f"{key}_choice"] = str(path)
    st.session_state[f"{key}_source"] = ""


def _load_source(source: str, family_names: Sequence[str], key: str) -> Picked | None:
    """Load a typed folder / hub id; show any problem with st.error and return None."""
    failed = st.session_state.get(f"{key}_failed")
    if failed and failed[0] == source and not is_local_folder(source):
        st.error(failed[1])  # do not retry a hub download on every rerun
        return None
    try:
        check_source(source)
        folder, origin = resolve(source)
        info = read_info(folder, origin)
        if info.family not in family_names:
            raise CheckpointError(f"{info.name} is a {info.family!r} checkpoint; this page shows "
                                  f"{', '.join(family_names)} models")
        mtime = checkpoint_mtime(folder)
        model, _ = load_cached(str(folder), mtime)
    except (CheckpointError, OSError, ValueError) as err:
        message = plain_error(err) if isinstance(err, OSError) else str(err)  # "permission denied: ...", no errno
        st.session_state[f"{key}_failed"] = (source, message)
        st.error(message)
        return None
    st.session_state.pop(f"{key}_failed", None)
    return Picked(model, info, mtime)


def _default_choice(infos: Sequence[CheckpointInfo], family: str | None) -> str:
    """The shipped checkpoint of ``family`` with the lowest Fréchet distance, else the first
    shipped one of any family, else the first of all."""
    def fd(info: CheckpointInfo) -> float:
        value = info.metrics.get("frechet_distance")
        return float(value) if isinstance(value, (int, float)) else float("inf")

    shipped = [i for i in infos if i.origin == "shipped"]
    preferred = sorted((i for i in shipped if i.family == family), key=fd)
    return str((preferred or shipped or list(infos))[0].path)


def checkpoint_picker(family_names: Sequence[str], key: str, default_family: str | None = None) -> Picked | None:
    """Choose a checkpoint of ``family_names``: shipped ones first, then the user's runs, or a
    typed local folder / Hugging Face hub id (which takes precedence while it is filled in).
    Until the user picks, the best shipped checkpoint of ``default_family`` is shown.

    Returns the loaded model (cached, shared: do not modify) or None when nothing usable is
    chosen; every CheckpointError is shown with st.error and the page keeps running.
    """
    infos = [i for i in visible_checkpoints() if i.family in family_names]
    by_path = {str(i.path): i for i in infos}
    left, right = st.columns([3, 2])
    with right:
        source = st.text_input("or load a local Hugging Face folder / hub id", key=f"{key}_source",
                               placeholder="path/to/folder or owner/name",
                               help="A genlib checkpoint folder (config.json + model.safetensors) on this "
                                    "machine, or a Hugging Face hub id when the machine is online.").strip()
    with left:
        if infos:
            paths = list(by_path)
            default = _default_choice(infos, default_family)
            # Streamlit forgets a widget's state while its page is not shown; this plain key does not,
            # so the choice survives a visit to another page.
            last = st.session_state.get(f"{key}_last")
            choice = st.selectbox("Model", paths, index=paths.index(last if last in by_path else default),
                                  key=f"{key}_choice", format_func=lambda p: _option_label(by_path[p]),
                                  disabled=bool(source),
                                  help="Shipped checkpoints first, then runs you trained (newest runs appear "
                                       "here as soon as they are saved).")
            st.session_state[f"{key}_last"] = choice
        else:
            choice = None
            st.info("No checkpoints yet: train one in the Train tab, or load a folder on the right.")
    if source:
        picked = _load_source(source, family_names, key)
        if picked is not None:
            return picked
        if choice is not None:
            st.caption(f"Showing {by_path[choice].name} instead.")
    if choice is None:
        return None
    info = by_path[choice]
    try:
        mtime = checkpoint_mtime(info.path)
        model, _ = load_cached(choice, mtime)
    except (CheckpointError, OSError) as err:
        st.error(str(err))
        return None
    return Picked(model, info, mtime)


# -- images and downloads -----------------------------------------------------------------------------
def show_grid(images: torch.Tensor, nrow: int, caption: str | None = None, scale: int = GRID_SCALE) -> bytes:
    """Show images (N,C,H,W) in [0,1] as one crisp grid; returns the displayed PNG bytes."""
    png = grid_png(images, nrow, scale=scale)
    st.image(png, caption=caption, output_format="PNG")
    return png


def download_png(png: bytes, file_name: str, key: str, label: str = "Download PNG") -> None:
    """A download button for PNG bytes (from ``show_grid`` or genlib.images.grid_png)."""
    st.download_button(label, data=png, file_name=file_name, mime="image/png", key=key, on_click="ignore",
                       icon=":material/download:")


# -- loss curves --------------------------------------------------------------------------------------
def scalars_figure(history: pd.DataFrame | list[dict[str, float]], left: Sequence[str], right: Sequence[str] = (),
                   left_title: str = "", right_title: str = "", height: int = 320) -> go.Figure:
    """Logged scalars against step: ``left`` keys on the left axis, ``right`` keys on a second one."""
    df = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    fig = go.Figure()
    if len(df) > 2000:  # keep the browser fast on long runs
        df = df.iloc[:: len(df) // 2000 + 1]
    for keys, axis in ((left, "y"), (right, "y2")):
        for key in keys:
            if key in df:
                fig.add_trace(go.Scatter(x=df["step"], y=df[key], name=key, mode="lines", yaxis=axis))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="step",
                      yaxis=dict(title=left_title, rangemode="tozero"),
                      yaxis2=dict(title=right_title, overlaying="y", side="right", showgrid=False,
                                  rangemode="tozero"),
                      legend=dict(orientation="h", y=1.12, x=0))
    return fig


# The curve a loss log is read by, found by the logged column that names its unit (the first one present),
# with its axis title: a flow's bits/dim is not a VAE's reconstruction loss.
LOSS_CURVES = (("recon", "reconstruction loss (nats/image)"),
               ("bits_per_dim", "bits/dim (8-bit digits)"),
               ("nats", "−log p(x) (nats/image, binarized digits)"),
               ("reconstruction_error", "reconstruction error (mean squared, per pixel)"))


def loss_figure(history: pd.DataFrame | list[dict[str, float]], height: int = 320) -> go.Figure:
    """The log's main curve (left axis, titled by its unit; ``LOSS_CURVES``) and KL (right axis, when
    logged) against step."""
    df = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    main, title = next(((key, title) for key, title in LOSS_CURVES if key in df), ("loss", "training loss"))
    return scalars_figure(df, [main], ["kl"], title, "KL (nats/image)", height)


# -- lazy tabs -----------------------------------------------------------------------------------------
def model_tabs(tabs: dict[str, Callable], key: str, picked: "Picked | None",
               needs_no_model: Sequence[Callable] = (),
               missing: str = "Choose a model above, or train one in the Train tab.") -> None:
    """Draw only the open tab (``on_change="rerun"`` makes st.tabs lazy: t-SNE, sampling are not free).

    A tab function takes the picked model, or nothing if it is in ``needs_no_model``. A failing tab
    shows its error and leaves the page running (Streamlit's rerun/stop signals pass through).
    """
    for tab, (name, render) in zip(st.tabs(list(tabs), key=key, on_change="rerun"), tabs.items()):
        if tab.open is False:
            continue
        with tab:
            try:
                if render in needs_no_model:
                    render()
                elif picked is None:
                    st.info(missing)
                else:
                    render(picked)
            except Exception as err:  # an unusual checkpoint must not take the page down
                logging.getLogger(__name__).exception("tab %r failed", name)  # the class and traceback
                st.error(f"{name} could not be shown: {plain_error(err)}")
