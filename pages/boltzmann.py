"""Boltzmann machines: a restricted Boltzmann machine on binarized digits.

Choose a checkpoint, then run Gibbs chains from noise or from a test digit and scrub them frame by
frame, look at its filters, compare the free energy of digits with faces and noise, read its test
likelihood (an AIS estimate of log Z, with its standard error, and the pseudo-likelihood, labelled as
such), compare its hidden units as features with scikit-learn's BernoulliRBM, train a new one, or
download a checkpoint's files. The maths lives in ``genlib.families.boltzmann``; this file only draws.
Session-state keys start with ``rbm_``.
"""

import plotly.graph_objects as go
import streamlit as st
import torch

from genlib.background import get as get_work
from genlib.background import start_task
from genlib.data import lfw_faces, mnist, uniform_noise
from genlib.families.boltzmann import pseudo_log_likelihood
from genlib.families.boltzmann.analysis import feature_accuracy, filters, free_energy_table, gibbs_frames
from genlib.images import frames_gif
from genlib.likelihood import binarize
from genlib.outliers import SOURCE_COLORS, auroc
from pages._panels import metrics_panel, train_panel
from pages._ui import Picked, checkpoint_picker, global_seed, model_tabs, page_families, require_router, show_grid, \
    watch

require_router()

FAMILIES = page_families(__file__)
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "preview_every")
NUM_OUTLIERS = 100
CHAINS = 16


@st.cache_data(show_spinner=False, max_entries=16)
def cached_free_energy(path: str, mtime: float, _model):
    return free_energy_table(_model, mnist().test_images, lfw_faces(), uniform_noise(NUM_OUTLIERS))


@st.cache_data(show_spinner=False, max_entries=32)
def cached_chain(path: str, mtime: float, start: str, steps: int, seed: int, _model):
    split = mnist()
    gen = torch.Generator().manual_seed(seed)
    if start == "noise":
        v0 = torch.bernoulli(torch.full((CHAINS, 1, 28, 28), 0.5), generator=gen)
    else:
        v0 = binarize(split.test_images[:CHAINS])
    return gibbs_frames(_model, v0, steps, frames=50, seed=seed)


# -- tabs -------------------------------------------------------------------------------------------
def chains_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    c1, c2 = st.columns(2)
    start = c1.radio("Start from", ["noise", "test digits"], horizontal=True, key="rbm_chain_start")
    steps = int(c2.number_input("Gibbs steps", 1, 20_000, 1000, key="rbm_chain_steps"))
    with st.spinner(f"Running {CHAINS} chains for {steps:,} steps…"):
        frames, done_at = cached_chain(p.path, p.mtime, start, steps, seed, m)
    frame = st.slider("Frame", 0, len(frames) - 1, len(frames) - 1, key="rbm_chain_frame",
                      help="Scrub the chain: frame 0 is the start, the last frame is after every step.")
    done = done_at[frame]
    show_grid(frames[frame], 8, f"{CHAINS} chains from {start} after {done:,} of {steps:,} Gibbs steps (p(v | h) "
                                f"shown) · seed {seed}", scale=3)
    st.download_button("Download the chain (GIF)", frames_gif(frames, 8), file_name=f"{p.info.name}-gibbs-{start}.gif",
                       mime="image/gif", key="rbm_dl_gif", icon=":material/download:", on_click="ignore")


def filters_tab(p: Picked) -> None:
    show_grid(filters(p.model, 64), 8, "the first 64 hidden units' weights W_j (each scaled to its own range): the "
                                       "strokes each unit looks for", scale=3)


def free_energy_tab(p: Picked) -> None:
    st.markdown("p(v) = exp(−F(v)) / Z, so the free energy F ranks images by probability without Z: lower is more "
                f"probable. Below: the 1,000 test digits, {NUM_OUTLIERS} faces and {NUM_OUTLIERS} noise images, each "
                "binarized once.")
    with st.spinner("Free energies…"):
        table = cached_free_energy(p.path, p.mtime, p.model)
    fig = go.Figure([go.Histogram(x=group["score"], name=source, opacity=0.6, histnorm="probability density",
                                  nbinsx=60, marker_color=SOURCE_COLORS.get(source))
                     for source, group in table.groupby("source", sort=False)])
    fig.update_layout(barmode="overlay", height=380, xaxis_title="free energy F(v) ↓", yaxis_title="density",
                      margin=dict(l=10, r=10, t=30, b=10))
    left, right = st.columns([4, 1])
    left.plotly_chart(fig, key="rbm_free_energy")
    right.metric("AUROC digits vs non-digits", f"{auroc(table):.3f}")


def likelihood_tab(p: Picked) -> None:
    m = p.model
    x = binarize(mnist().test_images)
    log_z, stderr = float(m.log_z), float(m.log_z_stderr)
    nll = (m.free_energy(x.to(m.device)).double() + log_z).mean().item()
    pll = pseudo_log_likelihood(m, x.to(m.device), torch.Generator().manual_seed(0)).mean().item()
    cols = st.columns(3)
    cols[0].metric("log Z (AIS estimate)", f"{log_z:.2f} ± {stderr:.2f}")
    cols[1].metric("test −log p(v), estimate", f"{nll:.2f} ± {stderr:.2f} nats")
    cols[2].metric("pseudo-log-likelihood", f"{pll:.2f} nats", help="784 log σ(F(ṽ) − F(v)) with one random bit "
                   "flipped: a proxy that needs no Z, not a likelihood.")
    st.caption(f"{m.likelihood_note().capitalize()}. The published RBM with 500 hidden units and CD-25 scored 86.34 "
               "nats by AIS on full MNIST (60,000 training digits); Compare draws both on the binarized panel.")


def features_tab(p: Picked) -> None:
    st.markdown("An RBM's hidden units are features. scikit-learn's example pipeline trains a BernoulliRBM and a "
                "logistic regression on its features; here the same regression (C = 6000) is trained on this RBM's "
                "p(h | v), on a BernoulliRBM with as many hidden units trained on the same 4,000 digits (learning rate "
                "0.06, 20 iterations), and on the raw pixels, and scored on the 1,000 test digits.")
    key = f"rbm-features:{p.path}:{p.mtime}"
    if st.button("Compare the features", key="rbm_features_run", icon=":material/play_arrow:"):
        split, model = mnist(), p.model

        def run(report, cancel):
            report(0.1, "training scikit-learn's BernoulliRBM and three logistic regressions (about a minute)")
            return feature_accuracy(model, split.train_images, split.train_labels, split.test_images, split.test_labels)

        st.session_state["rbm_features_id"] = start_task(key, run, "RBM features").id
    work = get_work(st.session_state.get("rbm_features_id"))
    if work is None or work.key != key:
        st.info("Press the button to train the baseline and the classifiers in the background.")
        return
    if work.status == "running":
        watch([work.id], lambda snaps: st.progress(snaps[0].fraction, text=snaps[0].message), every=1.0)
        return
    snap = work.snapshot()
    if snap.status != "finished":
        st.error(f"The comparison stopped: {snap.message}")
        return
    scores = snap.result
    cols = st.columns(3)
    cols[0].metric(f"this RBM's {scores.hidden} features", f"{scores.lab_rbm:.1%}")
    cols[1].metric("scikit-learn BernoulliRBM", f"{scores.sklearn_rbm:.1%}",
                   delta=f"{100 * (scores.lab_rbm - scores.sklearn_rbm):+.1f} points for this RBM")
    cols[2].metric("raw pixels", f"{scores.raw_pixels:.1%}")


def train_tab() -> None:
    train_panel(FAMILIES, "rbm", TRAIN_FIELDS, train_defaults={"epochs": 5, "lr": 0.01, "batch_size": 64})


def metrics_tab(p: Picked) -> None:
    metrics_panel(p, "rbm")


# -- page ---------------------------------------------------------------------------------------------
TABS = {
    "Gibbs chains": chains_tab,
    "Filters": filters_tab,
    "Free energy": free_energy_tab,
    "Likelihood": likelihood_tab,
    "Features": features_tab,
    "Train": train_tab,
    "Metrics & downloads": metrics_tab,
}

st.title("Boltzmann machines")
st.caption("A restricted Boltzmann machine on binarized digits: an energy-based model trained by contrastive "
           "divergence, its likelihood estimated by annealed importance sampling.")
picked = checkpoint_picker(FAMILIES, key="rbm_model", default_family="rbm")
if picked is not None:
    m = picked.model
    st.caption(f"{m.config.hidden} hidden units · {'persistent ' if m.config.persistent else ''}CD-{m.config.cd_steps}"
               f" · {m.num_parameters():,} parameters")

model_tabs(TABS, "rbm_tab", picked, needs_no_model=(train_tab,))
