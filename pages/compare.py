"""Compare: any set of models side by side, scored on equal terms.

Pick shipped models, runs trained in this app, or a local folder / hub id; see one sample grid per
model from the same seed, a scoreboard with every metric (n/a with the reason), charts, nearest
training images, and a one-click report. Shipped checkpoints carry their scorecards, so the default
view draws at once; anything else is scored in a background task while the rows that are ready
are shown. The selection and seed live in the URL (``?cmp_models=a&cmp_models=b&cmp_seed=0``), so
a copied link reopens the same comparison. Nothing here is family-specific: a new family's
checkpoints appear with no change to this page.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from genlib import background
from genlib.background import Snapshot
from genlib.checkpoints import CheckpointError
from genlib.comparison import (Comparison, Evaluator, ScoringFailure, cached_references, cached_scorecard,
                               default_selection, scored_families, start_references, start_scoring,
                               text_scoreboard)
from genlib.data import mnist
from genlib.images import from_uint8, to_grid, to_png
from genlib.metrics import nearest_neighbours
from genlib.report import FIGURES, na_reasons, report_zip, safe_name, scoreboard_frame, scoreboard_html, scorecard_png
from genlib.scoring import METRIC_BY_KEY, METRICS, NUM_EVAL_SAMPLES, Scorecard
from pages._ui import (GRID_SCALE, check_source, global_seed, require_router, visible_checkpoints, visitor,
                       watch)

require_router()

NEIGHBOURS = 5
MAX_SEED = 2**31 - 1
# The columns a first look needs; the rest are one click away in "Columns".
DEFAULT_COLUMNS = ("frechet_distance", "kid", "precision", "recall", "class_entropy_bits", "class_accuracy",
                   "bits_per_dim", "binarized_nats", "sample_ms_per_image", "num_parameters")


@st.cache_resource(show_spinner="Loading the evaluator…")
def evaluator() -> Evaluator:
    return Evaluator.load()


def chart_config(name: str) -> dict:
    """Plotly's toolbar always shown, its camera button saving a named PNG at twice the size."""
    return {"displayModeBar": True, "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}}


# -- the selection, kept in the URL in the README's format -------------------------------------------------
def seed_from_url() -> int | None:
    text = st.query_params.get("cmp_seed")
    if text is None:
        return None
    if text.isdigit() and int(text) <= MAX_SEED:
        return int(text)
    st.warning(f"The link's seed {text!r} is not a whole number from 0 to {MAX_SEED:,}; using the global seed.")
    return None


scored = scored_families()  # one scoreboard per data kind; today the evaluator scores digits
# A hosted demo keys a visitor's runs by their folder (names would resolve in the shared runs/ folder).
available = {info.name if info.origin == "shipped" or visitor() is None else str(info.path): info
             for info in visible_checkpoints() if info.family in scored}
if "cmp_models" not in st.session_state:  # a new session: the link decides, else one model per family
    st.session_state["cmp_models"] = list(dict.fromkeys(st.query_params.get_all("cmp_models"))) or \
        default_selection(list(available.values()))
    st.session_state["cmp_seed"] = seed_from_url() if "cmp_seed" in st.query_params else global_seed()
    if st.session_state["cmp_seed"] is None:
        st.session_state["cmp_seed"] = global_seed()
options = list(available) + [s for s in st.session_state["cmp_models"] if s not in available]

st.title("Compare models")
st.caption("Every model draws the same number of samples from the same seed and is measured against the "
           "4,000 training digits in the digit classifier's features. Reference rows give the scale: real "
           "held-out digits are the floor, uniform noise the ceiling.")
left, right = st.columns([4, 1])
with left:
    chosen: list[str] = st.multiselect(
        "Models", options, key="cmp_models", accept_new_options=True, persist_state="session",
        format_func=lambda n: f"{available[n].name} · {available[n].family} · {available[n].origin}"
        if n in available else n,
        placeholder="Choose models, or type a local folder / hub id and press Enter",
        help="Shipped checkpoints, runs trained in this app, or any genlib / diffusers Hugging Face folder "
             "(a local path, or owner/name when this machine is online). The dropdown can select them all.")
with right:
    seed = int(st.number_input("Seed", min_value=0, max_value=MAX_SEED, step=1, key="cmp_seed",
                               persist_state="session", help="Seeds every model's samples; part of the shared URL."))
st.query_params.from_dict({"cmp_models": chosen, "cmp_seed": str(seed)})


def text_scoreboard_section() -> None:
    """Text models on their own scoreboard: measured on the text kind's held-out split, not on digits."""
    rows = text_scoreboard(visible_checkpoints())
    if not rows:
        return
    st.subheader("Text models")
    st.caption("Text models are scored on their own kind: the held-out last 10% of the Python documentation "
               "topics, as each checkpoint's metrics.json records it (`python -m genlib eval NAME` re-measures). "
               "Lower bits per character is better.")
    frame = pd.DataFrame(rows)
    st.dataframe(frame, hide_index=True, key="cmp_text_board")
    st.download_button("Text scoreboard CSV", data=frame.to_csv(index=False), file_name="genlib-text-scoreboard.csv",
                       mime="text/csv", key="cmp_text_csv", on_click="ignore", icon=":material/download:")


if not chosen:
    st.info("Choose at least one model above.")
    text_scoreboard_section()
    st.stop()

# -- scorecards: stored ones at once, the rest in background tasks --------------------------------------------
cancelled: set[str] = st.session_state.setdefault("cmp_cancelled", set())
ready: dict[str, Scorecard] = {}
pending: dict[str, Snapshot] = {}
errors: dict[str, str] = {}
for source in chosen:
    if source not in available:  # typed, or from a link: in the hosted demo only the visitor's own or shipped
        try:
            check_source(source)
        except CheckpointError as err:
            errors[source] = str(err)
            continue
    card = cached_scorecard(source, evaluator(), seed=seed)
    if card is not None:
        ready[source] = card
        continue
    if (source, seed) in cancelled:
        errors[source] = "scoring was cancelled"
        continue
    snap = start_scoring(source, evaluator(), seed=seed).snapshot()
    if snap.status == "finished" and isinstance(snap.result, Scorecard):
        ready[source] = snap.result
    elif snap.status == "finished" and isinstance(snap.result, ScoringFailure):
        errors[source] = snap.result.message
    elif snap.status == "running":
        pending[source] = snap
    else:
        errors[source] = f"scoring stopped: {snap.message}"
refs = cached_references(evaluator(), seed)
refs_task = None
if refs is None:
    refs_task = start_references(evaluator(), seed).snapshot()
    refs = refs_task.result if refs_task.status == "finished" else []
cards = [ready[s] for s in chosen if s in ready]
comparison = Comparison(seed, cards, refs, errors)


def cancel_scoring(source: str, task_id: str) -> None:
    task = background.get(task_id)
    if task is not None:
        task.cancel()
    cancelled.add((source, seed))


def scoring_progress(snaps: list[Snapshot], sources: dict[str, str]) -> None:
    """Live progress of the background scoring (``watch`` reruns the page as soon as one has finished)."""
    for snap in snaps:
        source = sources[snap.id]
        bar, button = st.columns([6, 1], vertical_alignment="bottom")
        bar.progress(snap.fraction, text=f"Scoring **{source}** in the background… {snap.fraction:.0%} · "
                                         f"{snap.message}")
        button.button("Cancel", key=f"cmp_cancel_{safe_name(source)}", on_click=cancel_scoring,
                      args=(source, snap.id))


if pending or (refs_task is not None and refs_task.status == "running"):
    st.caption("Rows that are ready are shown below; the others fill in as their scoring finishes "
               f"({NUM_EVAL_SAMPLES:,} samples each, one model at a time).")
    watched = {snap.id: source for source, snap in pending.items()}
    if refs_task is not None and refs_task.status == "running":
        watched[refs_task.id] = "the reference sets"
    watch(list(watched), lambda snaps: scoring_progress(snaps, watched))
for source, message in errors.items():
    left, right = st.columns([6, 1], vertical_alignment="center")
    left.error(f"**{source}**: {message}")
    if (source, seed) in cancelled:
        right.button("Score again", key=f"cmp_again_{safe_name(source)}",
                     on_click=lambda s=source: cancelled.discard((s, seed)))

# -- grids ---------------------------------------------------------------------------------------------------
st.subheader("Samples")
st.caption(f"The first 100 of {NUM_EVAL_SAMPLES:,} samples per model, seed {seed}. "
           "Conditional models show one row per class.")
shown = [s for s in chosen if s in ready or s in pending]
columns = st.columns(max(1, min(4, len(shown))))
for i, source in enumerate(shown):
    with columns[i % len(columns)]:
        if source in ready:
            card = ready[source]
            st.image(scorecard_png(card, seed, scale=GRID_SCALE), output_format="PNG",
                     caption=f"{card.name} · {card.family}")
        else:
            with st.container(border=True, height=300):
                st.markdown(f"**{source}**  \nscoring… {pending[source].fraction:.0%}")
if not cards:
    st.stop()

# -- scoreboard -----------------------------------------------------------------------------------------------
st.subheader("Scoreboard")
pick, order = st.columns([4, 1])
with pick:
    picked = st.multiselect("Columns", [m.key for m in METRICS], default=list(DEFAULT_COLUMNS), key="cmp_columns",
                            persist_state="session", format_func=lambda k: METRIC_BY_KEY[k].title,
                            help="Which metrics the table shows; the report's CSV always has them all.")
with order:
    sort_by = st.selectbox("Sort by", picked or ["frechet_distance"], key="cmp_sort",
                           format_func=lambda k: METRIC_BY_KEY[k].title, help="Models are listed best first.")
waiting = {source: f"scoring… {snap.fraction:.0%}" for source, snap in pending.items()}
st.html(scoreboard_html(comparison, picked or ["frechet_distance"], sort_by, waiting))
reasons = na_reasons(comparison, picked)
st.caption("↓ lower is better, ↑ higher is better; the best model in each column is bold. Rows in italics are "
           "reference image sets, not models: real test digits are the floor, uniform noise the ceiling. "
           "Hover a header for its definition, an n/a for its reason.")
if reasons:
    with st.expander(f"Why some values are n/a ({len(reasons)})"):
        st.markdown("\n".join(f"- **{why}**: {', '.join(names)}" for why, names in reasons.items()))

# -- charts ---------------------------------------------------------------------------------------------------
st.subheader("Charts")
st.caption("Each chart's toolbar (top right) has a camera button that downloads it as PNG.")
chart_columns = st.columns(2)
for i, make in enumerate(FIGURES):
    with chart_columns[i % 2]:
        st.plotly_chart(make(comparison), key=f"cmp_chart_{make.__name__}",
                        config=chart_config(f"genlib-{make.__name__}-seed{seed}"))

# -- nearest neighbours ------------------------------------------------------------------------------------------
st.subheader("Nearest training images")
st.caption("Pick a sample from each model's grid: its nearest training digits in pixel space. A sample that "
           "is a near copy of a training digit is memorised, not generated.")
index = st.slider("Sample (position in the grid, row by row)", 0, 99, 0, key="cmp_nn_index")
train = mnist().train_images
nn_columns = st.columns(min(4, len(cards)))
for i, card in enumerate(cards):
    if card.grid is None or index >= len(card.grid) or card.grid.ndim != 3:
        continue
    sample = from_uint8(card.grid[index:index + 1])  # (1,C,H,W)
    if tuple(sample.shape[1:]) != tuple(train.shape[1:]):
        continue
    dist, idx = nearest_neighbours(sample, train, k=NEIGHBOURS)
    with nn_columns[i % len(nn_columns)]:
        st.image(to_png(to_grid(sample, nrow=1), scale=GRID_SCALE), caption=f"{card.name}: sample {index}")
        st.image(to_png(to_grid(train[idx[0]], nrow=NEIGHBOURS), scale=2),
                 caption="nearest: " + ", ".join(f"{d:.2f}" for d in dist[0].tolist()))
with st.expander("Closest sample–training pairs of each model (memorisation check)"):
    floor = next((c.metrics.get("nn_train_distance") for c in comparison.references if c.name == "real test digits"),
                 None)
    for card in cards:
        if card.closest_images is None:
            continue
        pairs = pd.DataFrame(card.closest)
        scale = f" (real test digits: {floor:.2f})" if isinstance(floor, float) else ""
        st.markdown(f"**{card.name}**: median distance to the nearest training digit "
                    f"{card.metrics.get('nn_train_distance', float('nan')):.2f}{scale}")
        st.image(to_png(to_grid(from_uint8(card.closest_images), nrow=len(pairs)), scale=2), caption="samples")
        st.image(to_png(to_grid(train[pairs["train"].tolist()], nrow=len(pairs)), scale=2),
                 caption="their nearest training digits: " + ", ".join(f"{d:.2f}" for d in pairs["distance"]))

# -- sharing and export --------------------------------------------------------------------------------------------
st.subheader("Share and export")
st.caption("The address bar holds the selection and the seed: copy it to reopen this comparison."
           + (f" The report holds the {len(cards)} models scored so far." if pending else ""))
st.download_button("Download the report (.zip: grids PNG, scoreboard CSV + JSON, HTML)",
                   data=lambda: report_zip(comparison),  # built on click, in its own thread
                   file_name=f"genlib-compare-seed{seed}.zip", mime="application/zip", key="cmp_report",
                   on_click="ignore", icon=":material/download:")
with st.expander("Single files"):
    st.download_button("Scoreboard CSV", data=scoreboard_frame(comparison).to_csv(index=False),
                       file_name=f"genlib-scoreboard-seed{seed}.csv", mime="text/csv", key="cmp_csv",
                       on_click="ignore")
    for card in cards:
        st.download_button(f"{card.name} grid (PNG)", data=scorecard_png(card, seed),
                           file_name=f"{safe_name(card.name)}-seed{seed}.png", mime="image/png",
                           key=f"cmp_png_{safe_name(card.name)}", on_click="ignore")

text_scoreboard_section()
