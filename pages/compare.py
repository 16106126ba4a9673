"""Compare: any set of models side by side, scored on equal terms.

Pick shipped models, runs trained in this app, or a local folder / hub id; see one sample grid per
model from the same seed, a sortable scoreboard with every metric (n/a with the reason), charts,
nearest training images, and a one-click report. The selection and seed live in the URL
(``bind="query-params"``), so a copied link reopens the same comparison. Nothing here is
family-specific: a new family's checkpoints appear with no change to this page.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

import genlib
from genlib.checkpoints import CheckpointError
from genlib.comparison import Comparison, Evaluator, references, score_checkpoint
from genlib.data import mnist
from genlib.images import from_uint8, to_grid, to_png
from genlib.metrics import nearest_neighbours
from genlib.report import FIGURES, report_zip, safe_name, scoreboard_frame, scorecard_png
from genlib.scoring import METRICS, NUM_EVAL_SAMPLES, Scorecard
from pages._ui import GRID_SCALE, global_seed, require_router

require_router()

NEIGHBOURS = 5
FORMATS = {"num_parameters": "{:,.0f}", "flops_per_sample": "{:.3g}", "frechet_distance": "{:.1f}",
           "kid": "{:.1f}", "sample_ms_per_image": "{:.3g}"}


# -- cached work (shared by all sessions) --------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the evaluator…")
def evaluator() -> Evaluator:
    return Evaluator.load()


@st.cache_data(show_spinner="Scoring the reference sets…")
def reference_cards(seed: int) -> list[Scorecard]:
    return references(evaluator(), seed)


# -- choosing models ---------------------------------------------------------------------------------------
st.title("Compare models")
st.caption("Every model draws the same number of samples from the same seed and is measured against the "
           "4,000 training digits in the digit classifier's features. Reference rows give the scale: real "
           "held-out digits are the floor, uniform noise the ceiling.")

available = {info.name: info for info in genlib.list_checkpoints()}
shipped = [name for name, info in available.items() if info.origin == "shipped"]
left, right = st.columns([4, 1])
with left:
    chosen: list[str] = st.multiselect(
        "Models", list(available), default=shipped, key="cmp_models", bind="query-params", accept_new_options=True,
        format_func=lambda n: f"{n} · {available[n].family} · {available[n].origin}" if n in available else n,
        placeholder="Choose models, or type a local folder / hub id and press Enter",
        help="Shipped checkpoints, runs trained in this app, or any genlib / diffusers Hugging Face folder "
             "(a local path, or owner/name when this machine is online).")
with right:
    seed = int(st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=global_seed(), step=1,
                               key="cmp_seed", bind="query-params",
                               help="Seeds every model's samples; part of the shared URL."))
if not chosen:
    st.info("Choose at least one model above.")
    st.stop()

# -- scoring, with progress for what is not cached yet -----------------------------------------------------
bar = st.progress(0.0, text="Scoring…")
cards: list[Scorecard] = []
errors: dict[str, str] = {}
for i, source in enumerate(chosen):
    def progress(fraction: float, message: str, i=i, source=source) -> None:
        bar.progress(min(1.0, (i + fraction) / (len(chosen) + 1)), text=f"Scoring {source}: {message}")

    try:
        # genlib keeps scorecards in memory and on disk, keyed by the checkpoint's content: computed once
        cards.append(score_checkpoint(source, evaluator(), seed=seed, progress=progress))
    except (CheckpointError, ValueError, RuntimeError, OSError) as err:
        errors[source] = str(err)
bar.progress(len(chosen) / (len(chosen) + 1), text="Scoring the reference sets…")
comparison = Comparison(seed, cards, reference_cards(seed), errors)
bar.empty()
for source, message in errors.items():
    st.error(f"**{source}**: {message}")
if not cards:
    st.stop()

# -- grids ---------------------------------------------------------------------------------------------------
st.subheader("Samples")
st.caption(f"The first 100 of {NUM_EVAL_SAMPLES:,} samples per model, seed {seed}. "
           "Conditional models show one row per class.")
columns = st.columns(min(4, len(cards)))
for i, card in enumerate(cards):
    with columns[i % len(columns)]:
        st.image(scorecard_png(card, seed, scale=GRID_SCALE), output_format="PNG",
                 caption=f"{card.name} · {card.family}")

# -- scoreboard -----------------------------------------------------------------------------------------------
st.subheader("Scoreboard")
frame = scoreboard_frame(comparison).drop(columns=["kind"])
styled = frame.style.format({m.key: m.format for m in METRICS}, na_rep="n/a")
st.dataframe(styled, hide_index=True, key="cmp_scoreboard", column_config={
    m.key: st.column_config.NumberColumn(m.title, help=m.help) for m in METRICS}
    | {"n/a because": st.column_config.TextColumn("n/a because", width="large")})
st.caption("Click a column header to sort. ↓ lower is better, ↑ higher is better. The last four rows are "
           "reference image sets, not models.")

# -- charts ---------------------------------------------------------------------------------------------------
st.subheader("Charts")
chart_columns = st.columns(2)
for i, make in enumerate(FIGURES):
    with chart_columns[i % 2]:
        st.plotly_chart(make(comparison), key=f"cmp_chart_{make.__name__}")

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
    for card in cards:
        if card.closest_images is None:
            continue
        pairs = pd.DataFrame(card.closest)
        st.markdown(f"**{card.name}**: median distance to the nearest training digit "
                    f"{card.metrics.get('nn_train_distance', float('nan')):.2f} (real test digits: "
                    f"{comparison.references[0].metrics.get('nn_train_distance', float('nan')):.2f})")
        st.image(to_png(to_grid(from_uint8(card.closest_images), nrow=len(pairs)), scale=2), caption="samples")
        st.image(to_png(to_grid(train[pairs["train"].tolist()], nrow=len(pairs)), scale=2),
                 caption="their nearest training digits: " + ", ".join(f"{d:.2f}" for d in pairs["distance"]))

# -- sharing and export --------------------------------------------------------------------------------------------
st.subheader("Share and export")
st.caption("The address bar holds the selection and the seed: copy it to reopen this comparison.")
st.download_button("Download the report (.zip: grids PNG, scoreboard CSV + JSON, HTML)",
                   data=lambda: report_zip(comparison),  # built on click, in its own thread file_name=f"genlib-compare-seed{seed}.zip",
                   mime="application/zip", key="cmp_report", on_click="ignore", icon=":material/download:")
with st.expander("Single files"):
    st.download_button("Scoreboard CSV", data=frame.to_csv(index=False), file_name="scoreboard.csv",
                       mime="text/csv", key="cmp_csv", on_click="ignore")
    for card in cards:
        st.download_button(f"{card.name} grid (PNG)", data=scorecard_png(card, seed),
                           file_name=f"{safe_name(card.name)}-seed{seed}.png", mime="image/png",
                           key=f"cmp_png_{safe_name(card.name)}", on_click="ignore")
