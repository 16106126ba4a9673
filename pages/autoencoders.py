"""Autoencoders: plain, denoising, variational and conditional VAE on 28x28 digits.

Choose a checkpoint, then look at samples, reconstructions, the latent space, interpolations and
anomaly scores, train a new model in the background, or download a checkpoint's files. What is
shown follows the model's abilities (``model.has``, ``model.conditional``, ``latent_dim``),
never its family name. The maths lives in ``genlib.families.autoencoders.analysis``; this file only draws.
Session-state keys start with ``ae_``.
"""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import genlib
from genlib.data import (DIGIT_UPLOAD_FORMATS, UploadError, format_names, lfw_faces, load_upload, mnist,
                         uniform_noise, upload_types)
from genlib.families.autoencoders import analysis
from pages._panels import metrics_panel, train_panel
from pages._ui import (Picked, checkpoint_picker, download_png, global_seed, model_tabs, page_families, require_router,
                       visible_checkpoints,
                       select_checkpoint, show_grid)

require_router()

FAMILIES = page_families(__file__)
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "preview_every")
NUM_OUTLIERS = 100  # faces and noise images in the anomaly test


# -- cached analysis (keyed by checkpoint path + mtime; the model itself is not hashed) -------------
@st.cache_data(show_spinner=False, max_entries=16)
def cached_projection(path: str, mtime: float, method: str, _model) -> pd.DataFrame:
    split = mnist()
    return analysis.latent_projection(_model, split.test_images, split.test_labels, method, max_points=1000)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_anomalies(path: str, mtime: float, _model) -> pd.DataFrame:
    return analysis.anomaly_scores(_model, mnist().test_images, lfw_faces(), uniform_noise(NUM_OUTLIERS))


def two_d_checkpoint() -> genlib.CheckpointInfo | None:
    """A checkpoint of this page with a 2-D latent space (shipped ones first), or None."""
    found = [i for i in visible_checkpoints() if i.family in FAMILIES and i.model_config.get("latent_dim") == 2]
    found.sort(key=lambda i: i.origin != "shipped")  # stable: within each origin, the listing's order
    return found[0] if found else None


def digit_choice(model, label: str, key: str) -> int | None:
    """A digit selectbox for conditional models; None for unconditional ones."""
    if not model.conditional:
        return None
    return st.selectbox(label, range(model.num_classes), key=key)


# -- tabs -------------------------------------------------------------------------------------------
def samples_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    digit = None
    if m.conditional:
        mode = st.radio("Digits", ["one row per digit", "a single digit"], horizontal=True, key="ae_sample_mode")
        if mode == "a single digit":
            digit = digit_choice(m, "Digit to draw", "ae_sample_digit")
    images, nrow = analysis.sample_grid(m, seed, n=64, digit=digit)
    png = show_grid(images, nrow, caption=f"{len(images)} samples from the prior · seed {seed} (change the global "
                                          f"seed in the sidebar for new ones) · the prior: {m.prior_summary()}")
    download_png(png, f"{p.info.name}-samples-seed{seed}.png", key="ae_dl_samples")


def reconstructions_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    left, right = st.columns(2)
    pick = left.radio("Test digits", ["first 16", "random 16 (global seed)"], horizontal=True, key="ae_rec_pick")
    x, y, _ = analysis.test_subset(16, seed=None if pick == "first 16" else seed)
    noise = None
    if m.has("denoise"):
        noise = right.slider("Noise level (std of the Gaussian pixel noise)", 0.0, 2.0,
                             float(m.config.noise_std), 0.05, key="ae_rec_noise",
                             help="The model was trained with the level it starts at.")
    r = analysis.reconstructions(m, x, y, noise_std=noise, seed=seed)
    show_grid(r["input"], 16, "input", scale=2)
    if r["noisy"] is not None:
        show_grid(r["noisy"], 16, f"noisy input (std {noise:.2f})", scale=2)
    show_grid(r["output"], 16, "output", scale=2)
    st.caption(f"Mean squared error of the outputs against the clean inputs: {r['mse'].mean():.4f}")

    st.subheader("Your own digit")
    upload = st.file_uploader(f"Upload a digit image ({format_names(DIGIT_UPLOAD_FORMATS)}). Dark ink on light "
                              "paper is inverted to match MNIST.", type=upload_types(DIGIT_UPLOAD_FORMATS),
                              key="ae_upload")
    st.page_link("pages/restore.py", label="This takes one handwritten digit (shrunk to 28x28). To denoise or "
                 "upscale a photo, use the Restore photos page →", icon=":material/auto_fix_high:")
    if upload is None:
        return
    try:
        x_up = load_upload(upload.getvalue())
    except UploadError as err:
        st.error(f"Could not use {upload.name}: {err}")
        return
    r = analysis.reconstructions(m, x_up, None, noise_std=noise, seed=seed)
    cols = st.columns(4)
    with cols[0]:
        show_grid(r["input"], 1, "your digit (28x28)", scale=4)
    if r["noisy"] is not None:
        with cols[1]:
            show_grid(r["noisy"], 1, "noisy", scale=4)
    with cols[2]:
        caption = "output" if r["labels"] is None else f"output (best as digit {int(r['labels'][0])})"
        show_grid(r["output"], 1, caption, scale=4)
    cols[3].metric("reconstruction MSE", f"{r['mse'][0]:.4f}")


def latent_tab(p: Picked) -> None:
    m = p.model
    d = m.config.latent_dim
    method = "pca"
    if d > 2:
        choice = st.radio(f"Projection of the {d}-D codes to 2-D", ["PCA", "t-SNE"], horizontal=True,
                          key="ae_latent_method")
        method = "tsne" if choice == "t-SNE" else "pca"
    spinner = "Running t-SNE on 1,000 codes (about 20 s on 2 CPU cores)…" if method == "tsne" else "Encoding…"
    with st.spinner(spinner):
        df = cached_projection(p.path, p.mtime, method, m)
    df = df.assign(digit=df["label"].astype(str))
    title = "2-D latent codes" if d == 2 else f"{'t-SNE' if method == 'tsne' else 'PCA'} of {d}-D latent codes"
    axes = {"pca": ("PC 1", "PC 2"), "tsne": ("t-SNE 1", "t-SNE 2")}[method] if d > 2 else ("z1", "z2")
    fig = px.scatter(df, x="x", y="y", color="digit", hover_data=["index"], opacity=0.75, title=title,
                     category_orders={"digit": [str(i) for i in range(10)]}, labels={"x": axes[0], "y": axes[1]})
    fig.update_traces(marker_size=5)
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=40, b=10))
    scatter, manifold = st.columns([3, 2]) if d == 2 else (st.container(), None)
    with scatter:
        st.plotly_chart(fig, key="ae_latent_scatter")
        st.caption("The 1,000 test digits, encoded (the posterior mean for VAEs) and coloured by their true digit.")
    if manifold is None:
        two_d = two_d_checkpoint()
        if two_d is None:
            st.info(f"The manifold grid needs a 2-D latent space; this model has {d} dimensions. "
                    "Train one with latent dim 2 in the Train tab to see it.")
            return
        st.info(f"The manifold grid needs a 2-D latent space; this model has {d} dimensions. "
                f"{two_d.name} ({two_d.family}, {two_d.origin}) has one.")
        st.button(f"Switch to {two_d.name}", key="ae_latent_switch", type="primary", icon=":material/swap_horiz:",
                  on_click=select_checkpoint, args=("ae_model", two_d.path),
                  help="Choose it in the model chooser above; every tab then shows that model.")
        return
    with manifold:
        digit = digit_choice(m, "Draw the grid as digit", "ae_manifold_digit")
        grid = analysis.manifold_grid(m, n=15, label=digit)
        spans = ("mean ± 2 std of the prior fitted to the training codes" if m.fitted_prior
                 else "standard-normal quantiles 5%…95%")
        show_grid(grid, 15, f"decoded 15x15 grid over z1 (left→right) and z2 (bottom→top): {spans}", scale=2)


def interpolation_tab(p: Picked) -> None:
    m = p.model
    n_test = mnist().test_images.shape[0]
    c1, c2, c3 = st.columns(3)
    a = int(c1.number_input("First test digit (index)", 0, n_test - 1, 0, key="ae_interp_a"))
    b = int(c2.number_input("Second test digit (index)", 0, n_test - 1, 1, key="ae_interp_b"))
    steps = c3.slider("Steps", 3, 20, 10, key="ae_interp_steps")
    (x_a, y_a), (x_b, y_b) = analysis.test_digit(a), analysis.test_digit(b)
    strip = analysis.interpolate(m, x_a, x_b, steps, labels=(y_a, y_b))
    note = f" (decoded as {y_a}, then as {y_b})" if m.conditional else ""
    left, middle, right = st.columns([1, 10, 1], vertical_alignment="center")
    with left:
        show_grid(x_a, 1, f"digit {a}", scale=2)
    with middle:
        show_grid(strip, steps, f"decoded from a straight line in latent space{note}", scale=2)
    with right:
        show_grid(x_b, 1, f"digit {b}", scale=2)

    st.subheader("Traversal")
    d = m.config.latent_dim
    if st.session_state.get("ae_trav_dim", 0) > d - 1:
        st.session_state["ae_trav_dim"] = 0  # the previous model had more dimensions
    c1, c2 = st.columns(2)
    dim = int(c1.number_input(f"Latent dimension (0–{d - 1})", 0, d - 1, 0, key="ae_trav_dim"))
    span = c2.slider("Span (± prior standard deviations)", 0.5, 5.0, 3.0, 0.5, key="ae_trav_span")
    strip = analysis.traverse(m, x_a, dim, span=span, steps=11, label=y_a)
    show_grid(strip, 11, f"dimension {dim} from −{span:g} to +{span:g} std; the other dimensions come from "
                         f"test digit {a}")


def anomalies_tab(p: Picked) -> None:
    st.markdown(
        "A model trained only on digits should reconstruct digits well and anything else badly, so the "
        "reconstruction error works as an **anomaly score**. Below: the per-image error for the 1,000 test "
        f"digits, {NUM_OUTLIERS} faces from LFW and {NUM_OUTLIERS} images of uniform noise. The AUROC says how "
        "well a threshold on the error separates digits from non-digits (1 = perfectly, 0.5 = chance)."
        + (" This model is conditional: every image is reconstructed with the digit label that fits it best."
           if p.model.conditional else ""))
    with st.spinner("Scoring digits, faces and noise…"):
        scores = cached_anomalies(p.path, p.mtime, p.model)
    colors = {analysis.SOURCE_DIGITS: "#4f46e5", analysis.SOURCE_FACES: "#f59e0b", analysis.SOURCE_NOISE: "#ef4444"}
    fig = go.Figure([go.Histogram(x=group["score"], name=source, opacity=0.6, histnorm="probability density",
                                  nbinsx=60, marker_color=colors.get(source))
                     for source, group in scores.groupby("source", sort=False)])
    fig.update_layout(barmode="overlay", height=400, xaxis_title="reconstruction MSE per image",
                      yaxis_title="density", margin=dict(l=10, r=10, t=30, b=10))
    left, right = st.columns([4, 1])
    left.plotly_chart(fig, key="ae_anomaly_hist")
    right.metric("AUROC digits vs non-digits", f"{analysis.anomaly_auroc(scores):.3f}")
    right.dataframe(scores.groupby("source", sort=False)["score"].median().rename("median MSE").to_frame(),
                    width="stretch")


def train_tab() -> None:
    train_panel(FAMILIES, "ae", TRAIN_FIELDS, train_defaults={"epochs": 5})


def metrics_tab(p: Picked) -> None:
    metrics_panel(p, "ae")


# -- page ---------------------------------------------------------------------------------------------
TABS = {
    "Samples": samples_tab,
    "Reconstructions": reconstructions_tab,
    "Latent space": latent_tab,
    "Interpolation & traversal": interpolation_tab,
    "Anomalies": anomalies_tab,
    "Train": train_tab,
    "Metrics & downloads": metrics_tab,
}

st.title("Autoencoders")
st.caption("Plain, denoising, variational and conditional variational autoencoders of 28x28 digits.")
picked = checkpoint_picker(FAMILIES, key="ae_model", default_family="vae")
if picked is not None:
    m = picked.model
    st.caption(f"{m.description} · latent dim {m.config.latent_dim} · {m.num_parameters():,} parameters · "
               f"abilities: {', '.join(sorted(m.abilities))}")

model_tabs(TABS, "ae_tab", picked, needs_no_model=(train_tab,))
