"""Normalizing flows: NICE, RealNVP and Glow on 28x28 digits, with their exact likelihood.

Choose a checkpoint, then draw samples at a temperature, see each digit beside its latent at every
scale (and the round trip back), interpolate in z, read the exact bits/dim of digits against faces
and noise, train a new flow in the background, or download a checkpoint's files. A 2-D continuous
flow (FFJORD) trains live in its own tab, with no checkpoint. The maths lives in
``genlib.families.flows``; this file only draws. Session-state keys start with ``flow_``.
"""

import plotly.graph_objects as go
import streamlit as st
import torch

from genlib.data import (DIGIT_UPLOAD_FORMATS, UploadError, format_names, lfw_faces, load_upload, mnist,
                         uniform_noise, upload_types)
from genlib.families.flows import analysis
from genlib.outliers import SOURCE_COLORS, SOURCE_DIGITS, auroc
from pages._panels import metrics_panel, train_panel
from pages._ui import Picked, checkpoint_picker, download_png, global_seed, model_tabs, page_families, require_router, \
    show_grid
from pages._widgets import sampling_widgets
from pages.flows.cnf import cnf_tab

require_router()

FAMILIES = page_families(__file__)
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "grad_clip", "preview_every")
NUM_OUTLIERS = 100   # faces and noise images in the likelihood histogram
NUM_SHOWN = 6        # digits in the x-and-z view


@st.cache_data(show_spinner=False, max_entries=16)
def cached_table(path: str, mtime: float, _model):
    return analysis.bits_per_dim_table(_model, mnist().test_images, lfw_faces(), uniform_noise(NUM_OUTLIERS))


# -- tabs -------------------------------------------------------------------------------------------
def samples_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    options = sampling_widgets(m, "flow_sampling")
    if options is None:
        return
    images = analysis.sample_grid(m, seed, n=64, temperature=options.temperature)
    png = show_grid(images, 8, caption=f"64 samples · temperature {options.temperature:g} · seed {seed}: every "
                                       "latent drawn from its prior with its noise scaled by the temperature, then "
                                       "the flow run backwards")
    download_png(png, f"{p.info.name}-samples-t{options.temperature:g}-seed{seed}.png", key="flow_dl_samples")
    st.caption("At temperature 1 the samples come from the model's own distribution (what Compare scores); "
               "lower temperatures trade variety for cleaner, more typical digits.")


def _digits_for_views() -> torch.Tensor | None:
    pick = st.radio("Digits", ["first test digits", "your own digit"], horizontal=True, key="flow_z_pick")
    if pick == "first test digits":
        return mnist().test_images[:NUM_SHOWN]
    upload = st.file_uploader(f"Upload a digit image ({format_names(DIGIT_UPLOAD_FORMATS)}). Dark ink on light "
                              "paper is inverted to match MNIST.", type=upload_types(DIGIT_UPLOAD_FORMATS),
                              key="flow_upload")
    if upload is None:
        st.info("Upload an image to see its latents.")
        return None
    try:
        return load_upload(upload.getvalue())
    except UploadError as err:
        st.error(f"Could not use {upload.name}: {err}")
        return None


def latents_tab(p: Picked) -> None:
    m = p.model
    x = _digits_for_views()
    if x is None:
        return
    st.markdown("A flow maps a digit to a latent z of exactly the same size (784 numbers), and back without loss. "
                "Multi-scale flows factor half the channels out after each scale: the early latents hold fine "
                "detail, the last one the coarse shape. Each latent is shown from −3 (black) to +3 (white); a "
                "well-trained flow makes them look like noise.")
    views = analysis.scale_views(m, x)
    columns = st.columns([1] + [max(1, v.nrow) for v in views])
    with columns[0]:
        show_grid(x, 1, "digit", scale=2)
    for column, view in zip(columns[1:], views):
        with column:
            show_grid(view.images, view.nrow, f"{view.title} · std {view.std:.2f}", scale=2)
    back = m.decode(m.encode(x.to(m.device))).cpu()
    error = (back - torch.round(x.clamp(0, 1) * 255) / 255).abs().max().item()
    st.caption(f"x → z → x: decoding the latents gives back every grey level of the 8-bit digits (largest "
               f"difference {error:.1e}).")


def interpolation_tab(p: Picked) -> None:
    m = p.model
    n_test = mnist().test_images.shape[0]
    c1, c2, c3 = st.columns(3)
    a = int(c1.number_input("First test digit (index)", 0, n_test - 1, 0, key="flow_interp_a"))
    b = int(c2.number_input("Second test digit (index)", 0, n_test - 1, 1, key="flow_interp_b"))
    steps = c3.slider("Steps", 3, 20, 10, key="flow_interp_steps")
    test = mnist().test_images
    strip = analysis.interpolate(m, test[a], test[b], steps)
    show_grid(strip, steps, f"decoded from a straight line between the latents of test digits {a} and {b} (the ends "
                            "are the digits themselves, exactly)", scale=2)


def likelihood_tab(p: Picked) -> None:
    st.markdown(
        "A flow's likelihood is exact, so it can score any image: below, the bits/dim of the 1,000 test digits, "
        f"{NUM_OUTLIERS} faces from LFW and {NUM_OUTLIERS} images of uniform noise. Lower means the model finds the "
        "image more likely. A flow trained on digits should put digits lowest; the AUROC says how well a threshold "
        "separates digits from the rest (1 = perfectly, 0.5 = chance). Flows are known to misjudge some "
        "out-of-distribution images (Nalisnick et al. 2019), so look at where the faces land.")
    with st.spinner("Scoring digits, faces and noise…"):
        table = cached_table(p.path, p.mtime, p.model)
    fig = go.Figure([go.Histogram(x=group["score"], name=source, opacity=0.6, histnorm="probability density",
                                  nbinsx=60, marker_color=SOURCE_COLORS.get(source))
                     for source, group in table.groupby("source", sort=False)])
    fig.update_layout(barmode="overlay", height=400, xaxis_title="exact bits/dim per image ↓ (log scale)",
                      xaxis_type="log", yaxis_title="density", margin=dict(l=10, r=10, t=30, b=10))
    left, right = st.columns([4, 1])
    left.plotly_chart(fig, key="flow_bpd_hist")
    right.metric("test digits, mean bits/dim", f"{table[table['source'] == SOURCE_DIGITS]['score'].mean():.3f}")
    right.metric("AUROC digits vs non-digits", f"{auroc(table):.3f}")
    right.dataframe(table.groupby("source", sort=False)["score"].median().rename("median bits/dim").to_frame(),
                    width="stretch")
    st.caption(p.model.likelihood_note().capitalize() + ". The Compare page puts it on the 8-bit likelihood panel "
               "beside the other models and the published figures.")


def train_tab() -> None:
    train_panel(FAMILIES, "flow", TRAIN_FIELDS, train_defaults={"epochs": 5, "lr": 1e-3, "grad_clip": 5.0})


def metrics_tab(p: Picked) -> None:
    metrics_panel(p, "flow")


# -- page ---------------------------------------------------------------------------------------------
TABS = {
    "Samples": samples_tab,
    "x and z": latents_tab,
    "Interpolation": interpolation_tab,
    "Likelihood": likelihood_tab,
    "2-D continuous flow": cnf_tab,
    "Train": train_tab,
    "Metrics & downloads": metrics_tab,
}

st.title("Normalizing flows")
st.caption("NICE, RealNVP and Glow: invertible networks trained by exact maximum likelihood on the 8-bit digits.")
picked = checkpoint_picker(FAMILIES, key="flow_model", default_family="glow")
if picked is not None:
    m = picked.model
    st.caption(f"{m.description} · {m.num_parameters():,} parameters · latents per scale: "
               f"{', '.join('x'.join(map(str, s)) for s in m.latent_shapes)}")

model_tabs(TABS, "flow_tab", picked, needs_no_model=(train_tab, cnf_tab))
