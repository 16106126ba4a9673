"""Autoregressive models: a Gated PixelCNN and a Row-LSTM PixelRNN on 28x28 digits.

Choose a checkpoint, then watch it draw digits pixel by pixel (on the background runner; scrub the
rows afterwards or download the GIF), see which earlier pixels one pixel's prediction depends on (the
plain masked-convolution PixelCNN's blind spot against the gated stacks), read the exact likelihood of
digits, faces and noise and the per-pixel surprise of one digit, train a new model, or download a
checkpoint's files. The maths lives in ``genlib.families.autoregressive``; this file only draws.
Session-state keys start with ``ar_``.
"""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from genlib import background
from genlib.background import RunnerBusy
from genlib.data import lfw_faces, mnist, uniform_noise
from genlib.families.autoregressive import MaskedStack, receptive_field
from genlib.families.autoregressive.analysis import MAX_ANIMATED, PixelSampling, field_picture, nll_table, pixel_nll_map
from genlib.images import frames_gif
from genlib.outliers import SOURCE_COLORS, SOURCE_DIGITS, auroc
from pages._panels import metrics_panel, train_panel
from pages._ui import (Picked, checkpoint_picker, global_seed, model_tabs, page_families,
                       require_router, show_grid, watch)

require_router()

FAMILIES = page_families(__file__)
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "grad_clip", "preview_every")
NUM_OUTLIERS = 100


@st.cache_data(show_spinner=False, max_entries=16)
def cached_table(path: str, mtime: float, _model):
    return nll_table(_model, mnist().test_images, lfw_faces(), uniform_noise(NUM_OUTLIERS))


def unit(model) -> str:
    return "nats" if model.binary else "bits/dim"


# -- tabs -------------------------------------------------------------------------------------------
def _show_frames(frames, count: int, key: str, final: bool) -> None:
    nrow = min(count, 8)
    if final:
        row = st.slider("Rows drawn", 1, len(frames), len(frames), key="ar_frame",
                        help="Scrub back through the sampling: each frame is one more finished row.")
        show_grid(frames[row - 1], nrow, f"after {row} of 28 rows · seed {global_seed()}", scale=3)
        st.download_button("Download the animation (GIF)", frames_gif(frames, nrow), file_name=f"{key}.gif",
                           mime="image/gif", key="ar_dl_gif", icon=":material/download:", on_click="ignore")
    else:
        show_grid(frames[-1], nrow, f"drawing: {len(frames)} of 28 rows", scale=3)


def sampling_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    st.markdown(f"Each pixel is drawn from p(x_ij | every pixel before it), in raster order: 784 passes of the "
                f"network per digit, so at most {MAX_ANIMATED} are drawn here at once (Compare scores 1,000, "
                "drawn ahead of time for shipped models).")
    count = int(st.number_input("Digits", 1, MAX_ANIMATED, 8, key="ar_count"))
    key = f"ar-sampling:{p.path}:{p.mtime}:{count}:{seed}"
    if st.button("Draw", type="primary", key="ar_draw", icon=":material/draw:"):
        try:
            work = background.start(PixelSampling(m, count, seed, key=key))
        except (RunnerBusy, ValueError) as err:
            st.error(str(err))
            return
        st.session_state["ar_sampling_id"] = work.id
    work = background.get(st.session_state.get("ar_sampling_id"))
    if not isinstance(work, PixelSampling) or work.key != key:
        st.info("Press **Draw** to watch the digits appear pixel by pixel.")
        return
    if work.status == "running":
        def draw(snaps) -> None:
            snap = snaps[0]
            st.progress(snap.fraction, text=snap.message)
            if snap.state:
                _show_frames(snap.state, count, key, final=False)

        watch([work.id], draw, every=0.5)
        return
    snap = work.snapshot()
    if snap.status != "finished":
        st.error(f"Sampling stopped: {snap.message}")
        return
    _show_frames(snap.state, count, f"{p.info.name}-pixel-by-pixel-seed{seed}", final=True)


def field_tab(p: Picked) -> None:
    m = p.model
    st.markdown("Which pixels can the prediction of one pixel (red) depend on? Blue: every pixel whose value "
                "changes it (the gradient of its output). Stacked **masked convolutions** (the first PixelCNN) "
                "miss a wedge above and to the right: the **blind spot**. The **gated** PixelCNN's vertical stack "
                "sees every row above, so nothing is missed; the **Row LSTM** sees a triangle above.")
    c1, c2 = st.columns(2)
    row = int(c1.number_input("Row", 0, 27, 14, key="ar_field_row"))
    col = int(c2.number_input("Column", 0, 27, 14, key="ar_field_col"))
    layers = getattr(m.config, "layers", 6)
    pictures = {f"masked convolutions ({layers} layers, untrained)": receptive_field(MaskedStack(layers), row, col),
                f"this model: {m.description.split(':')[0]}": receptive_field(m.logits, row, col)}
    for column, (title, field) in zip(st.columns(len(pictures)), pictures.items()):
        column.image(field_picture(field, row, col), caption=f"{title} · {int(field.sum())} pixels seen")


def likelihood_tab(p: Picked) -> None:
    m = p.model
    st.markdown(f"The likelihood is exact: -log p(x) is the sum of the per-pixel cross-entropies. Below, in {unit(m)}: "
                f"the 1,000 test digits, {NUM_OUTLIERS} faces and {NUM_OUTLIERS} noise images, each made into the "
                f"model's data ({'binarized once, seed 0' if m.binary else 'read as 8-bit'}).")
    with st.spinner("Scoring digits, faces and noise…"):
        table = cached_table(p.path, p.mtime, m)
    fig = go.Figure([go.Histogram(x=group["score"], name=source, opacity=0.6, histnorm="probability density",
                                  nbinsx=60, marker_color=SOURCE_COLORS.get(source))
                     for source, group in table.groupby("source", sort=False)])
    fig.update_layout(barmode="overlay", height=380, xaxis_title=f"exact −log p(x) per image ({unit(m)}) ↓",
                      yaxis_title="density", margin=dict(l=10, r=10, t=30, b=10))
    left, right = st.columns([4, 1])
    left.plotly_chart(fig, key="ar_nll_hist")
    right.metric(f"test digits, mean ({unit(m)})", f"{table[table['source'] == SOURCE_DIGITS]['score'].mean():.3f}")
    right.metric("AUROC digits vs non-digits", f"{auroc(table):.3f}")

    st.subheader("Where one digit surprises the model")
    index = int(st.number_input("Test digit (index)", 0, len(mnist().test_images) - 1, 0, key="ar_surprise_digit"))
    data, per_pixel = pixel_nll_map(m, mnist().test_images[index])
    a, b = st.columns(2)
    with a:
        show_grid(data.view(1, 1, 28, 28), 1, "the digit as the model reads it", scale=8)
    heat = px.imshow(per_pixel.numpy(), color_continuous_scale="Magma", labels={"color": "nats"},
                     title=f"−log p per pixel: {per_pixel.sum():.1f} nats in all")
    heat.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    b.plotly_chart(heat, key="ar_surprise_map")


def train_tab() -> None:
    train_panel(FAMILIES, "ar", TRAIN_FIELDS, train_defaults={"epochs": 3, "lr": 1e-3})


def metrics_tab(p: Picked) -> None:
    metrics_panel(p, "ar")


# -- page ---------------------------------------------------------------------------------------------
TABS = {
    "Sampling, pixel by pixel": sampling_tab,
    "Receptive field": field_tab,
    "Likelihood": likelihood_tab,
    "Train": train_tab,
    "Metrics & downloads": metrics_tab,
}

st.title("Autoregressive models")
st.caption("PixelCNN and PixelRNN: each pixel predicted from the ones before it, with an exact likelihood.")
picked = checkpoint_picker(FAMILIES, key="ar_model", default_family="pixelcnn")
if picked is not None:
    m = picked.model
    st.caption(f"{m.description} · {m.config.data} digits · {m.num_parameters():,} parameters")

model_tabs(TABS, "ar_tab", picked, needs_no_model=(train_tab,))
