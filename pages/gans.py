"""GANs: the textbook MLP GAN, DCGAN and a conditional GAN on digits, plus a live 2-D toy.

Choose a checkpoint and look at samples (with the truncation trick), slerp interpolations and the
nearest training images, or train a GAN in the background and watch its losses, D(x) and D(G(z)),
fixed-noise snapshots (scrubbable) and their class histogram, where mode collapse shows. The 2-D
toy trains small G and D nets on point clouds in the spirit of GAN Lab: D's decision surface, the
generated points and the gradient arrows that move them, live or one D/G step at a time.
The maths lives in genlib (the gan family package, metrics.py); this file only draws.
Session-state keys start with ``gan_``.
"""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from genlib import ConfigError, background
from genlib.background import RunnerBusy, Snapshot
from genlib.data import mnist
from genlib.families.gan import ToyConfig, ToySession, ToySnapshot, slerp, start_toy_session
from genlib.images import to_grid, to_png
from genlib.metrics import coverage_from_counts, nearest_neighbours
from pages._panels import metrics_panel, train_panel
from pages._ui import (GRID_SCALE, Picked, checkpoint_picker, download_png, global_seed, model_tabs, page_families,
                       require_router, scalars_figure, show_grid, watch)
from pages._widgets import config_widgets, make_config, sampling_widgets

require_router()

FAMILIES = page_families(__file__)
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "ema_decay", "preview_every")
TOY_FIELDS = ("distribution", "loss", "d_steps", "g_lr", "d_lr", "hidden", "noise_dim", "seed")
NEIGHBOURS = 5
SNAPSHOT_SCALE = 3  # the live snapshots' 28x28 digits at 84 px


def history_figure(history, height: int = 300) -> go.Figure:
    """G and D losses (left axis) and D's mean score on real and generated images (right axis)."""
    return scalars_figure(history, ["d_loss", "g_loss"], ["d_real", "d_fake"], "loss", "D(x), D(G(z))", height)


def class_histogram_figure(counts: list[int], height: int = 240) -> go.Figure:
    coverage = coverage_from_counts(counts)
    fig = go.Figure(go.Bar(x=list(range(len(counts))), y=counts))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(tickmode="linear"),
                      title=f"classes of 100 fixed-noise samples · entropy {coverage.entropy_bits:.2f} of "
                            f"{coverage.max_entropy_bits:.2f} bits", xaxis_title="digit (evaluator)")
    return fig


# -- image tabs ---------------------------------------------------------------------------------------
def samples_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    left, right = st.columns([1, 3])
    with left:
        options = sampling_widgets(m, "gan_sampling")  # generated from the family's GANSampling
    if options is None:
        return
    gen = torch.Generator().manual_seed(seed)
    if m.conditional:
        labels = m.class_rows(8)
        images, nrow, what = m.draw(len(labels), options, generator=gen, labels=labels), 8, "one row per digit"
    else:
        images, nrow, what = m.draw(64, options, generator=gen), 8, "64 samples"
    t = options.truncation
    with right:
        png = show_grid(images, nrow, caption=f"{what} · seed {seed}" + (f" · truncation {t:g}" if t else ""))
        download_png(png, f"{p.info.name}-seed{seed}.png", key="gan_dl_samples")


def interpolation_tab(p: Picked) -> None:
    m = p.model
    cols = st.columns(4)
    seed_a = cols[0].number_input("Start noise seed", 0, 2**31 - 1, global_seed(), key="gan_interp_a")
    seed_b = cols[1].number_input("End noise seed", 0, 2**31 - 1, global_seed() + 1, key="gan_interp_b")
    steps = cols[2].slider("Steps", 3, 16, 10, key="gan_interp_steps")
    digit = cols[3].selectbox("Digit", range(m.num_classes), key="gan_interp_digit") if m.conditional else None
    z0 = m.noise(1, torch.Generator().manual_seed(int(seed_a)))[0]
    z1 = m.noise(1, torch.Generator().manual_seed(int(seed_b)))[0]
    t = torch.linspace(0, 1, steps)
    paths = {"slerp (along the sphere where Gaussian noise lives)": slerp(z0, z1, t),
             "linear (the middle has an atypically small norm)": torch.lerp(z0, z1, t.unsqueeze(1).to(z0.device))}
    labels = torch.full((steps,), digit) if digit is not None else None
    for caption, z in paths.items():
        show_grid(m.sample_from_noise(z, labels), steps, caption=caption)


def memorisation_tab(p: Picked) -> None:
    m, seed = p.model, global_seed()
    st.caption("Is the generator copying its training digits? Each sample's nearest training images in pixel "
               "space; a distance near 0 would be a copy.")
    images = m.sample(16, generator=torch.Generator().manual_seed(seed), labels=m.default_labels(16))
    show_grid(images, 16, caption=f"16 samples · seed {seed}")
    index = st.slider("Sample", 0, 15, 0, key="gan_nn_index")
    train = mnist().train_images
    dist, idx = nearest_neighbours(images[index:index + 1].cpu(), train, k=NEIGHBOURS)
    left, right = st.columns([1, 5])
    left.image(to_png(to_grid(images[index:index + 1], nrow=1), scale=GRID_SCALE), caption=f"sample {index}")
    with right:
        show_grid(train[idx[0]], NEIGHBOURS, caption="nearest training digits · L2 distance "
                  + ", ".join(f"{d:.2f}" for d in dist[0].tolist()))
    all_dist, _ = nearest_neighbours(images.cpu(), train)
    st.caption(f"Median distance of these 16 samples to their nearest training digit: {all_dist.median():.2f}. "
               "Real held-out digits sit at about 5 (see the Compare page).")


# -- live training -----------------------------------------------------------------------------------
def gan_live(snap: Snapshot, key_prefix: str) -> None:
    """Losses and D's scores, then a scrubbable fixed-noise snapshot with its class histogram."""
    view = snap.state
    if view.history:
        st.plotly_chart(history_figure(view.history), key=f"{key_prefix}_live_curves_{snap.id}")
    if not view.snapshots:
        return
    steps = [s.step for s in view.snapshots]
    follow = st.toggle("Follow the latest snapshot", value=True, key=f"{key_prefix}_follow_{snap.id}",
                       disabled=len(steps) < 2)
    chosen = steps[-1]
    if len(steps) > 1 and not follow:
        chosen = st.select_slider("Snapshot at step", options=steps, value=steps[-1],
                                  key=f"{key_prefix}_scrub_{snap.id}_{len(steps)}")
    shot = view.snapshots[steps.index(chosen)]
    # At its own pixel width and above the histogram, not beside it: squeezed into a column the
    # digits shrank to about 20 px, too small to see a GAN's mistakes.
    st.image(to_png(shot.grid, scale=SNAPSHOT_SCALE), caption=f"fixed noise at step {shot.step}",
             width=shot.grid.shape[1] * SNAPSHOT_SCALE)
    if shot.class_counts:
        st.plotly_chart(class_histogram_figure(shot.class_counts), key=f"{key_prefix}_live_hist_{snap.id}")
    if snap.message and not snap.done:
        st.caption(snap.message)


def train_tab() -> None:
    st.caption("Tips: if D wins outright (D(x)≈1, D(G(z))≈0 for 200 steps) the run stops with a suggestion. "
               "Hinge or WGAN-GP losses and spectral normalisation keep D in check.")
    train_panel(FAMILIES, "gan", TRAIN_FIELDS, train_defaults={"epochs": 10, "lr": 2e-4, "batch_size": 64},
                render=gan_live)


def metrics_tab(p: Picked) -> None:
    metrics_panel(p, "gan", history_figure=history_figure)


# -- the 2-D toy -------------------------------------------------------------------------------------
def toy_figure(snap: ToySnapshot, status: str) -> go.Figure:
    """D's surface as a heatmap, real and generated points, and arrows where G moves its points."""
    fig = go.Figure(go.Heatmap(x=snap.xs, y=snap.ys, z=snap.surface, colorscale="RdBu", opacity=0.75,
                               zmid=0.5 if snap.surface_is_probability else 0.0,
                               colorbar=dict(title="D(x)" if snap.surface_is_probability else "critic")))
    fig.add_trace(go.Scatter(x=snap.real[:, 0], y=snap.real[:, 1], mode="markers", name="real",
                             marker=dict(size=4, color="#1a9850")))
    fig.add_trace(go.Scatter(x=snap.fake[:, 0], y=snap.fake[:, 1], mode="markers", name="generated",
                             marker=dict(size=4, color="#762a83")))
    span = max(snap.bounds[1] - snap.bounds[0], snap.bounds[3] - snap.bounds[2])
    norms = np.linalg.norm(snap.arrows, axis=1, keepdims=True)
    tips = snap.fake + 0.06 * span * snap.arrows / max(float(norms.max()), 1e-12)
    every = max(1, len(snap.fake) // 150)
    xs, ys = [], []
    for (x0, y0), (x1, y1) in zip(snap.fake[::every], tips[::every]):
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="G's gradient", line=dict(color="black", width=1)))
    # Equal scales on both axes shrink the plot area (constrain="domain") instead of widening an axis
    # beyond the bounds, so the axes show exactly the extent D's surface was computed over.
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(range=snap.bounds[:2], constrain="domain"),
                      yaxis=dict(range=snap.bounds[2:], scaleanchor="x", constrain="domain"),
                      legend=dict(orientation="h", y=1.06),
                      title=f"step {snap.step} · {status}", uirevision="toy")
    return fig


def draw_toy(snap: Snapshot) -> None:
    """The toy's picture (``snap.state``), its curves and its status message."""
    picture: ToySnapshot = snap.state
    left, right = st.columns([3, 2])
    left.plotly_chart(toy_figure(picture, snap.status), key="gan_toy_plot")
    with right:
        if picture.history:
            st.plotly_chart(history_figure(pd.DataFrame(picture.history), height=260), key="gan_toy_curves")
        mean = picture.fake.mean(axis=0)
        st.caption(f"Generated mean ({mean[0]:.2f}, {mean[1]:.2f}) · real mean "
                   f"({picture.real[:, 0].mean():.2f}, {picture.real[:, 1].mean():.2f})")
        if snap.status == "failed":
            st.error(f"{snap.message}. Try lower learning rates or another loss, then Reset.")
        elif snap.message and snap.status != "running":
            st.caption(snap.message)


def toy_tab() -> None:
    settings, view = st.columns([1, 3], gap="large")
    session = background.get(st.session_state.get("gan_toy_id"))
    session = session if isinstance(session, ToySession) else None
    with settings:
        values = config_widgets(ToyConfig, "gan_toy", only=TOY_FIELDS, columns=1)
        speed = st.slider("Steps per tick", 1, 50, 5, key="gan_toy_speed", help="G updates per 20 ms tick")
        config = make_config(ToyConfig, values)
        if config is None:
            return
        changed = session is None or session.config != config or session.status in ("cancelled", "failed", "finished")

        def fresh_session(run: bool):
            """Replace the current session with a new one from the settings shown."""
            if session is not None:
                session.cancel()
            new = start_toy_session(config, run=run, steps_per_tick=speed)
            st.session_state["gan_toy_id"] = new.id
            return new

        try:
            # One full-width button per row: side by side in this narrow column the labels were cut ("One …",
            # "Resu…"). Run / Resume and Pause are one button that says what a click will do.
            running = session is not None and session.status == "running" and not changed
            if running:
                if st.button("Pause", key="gan_toy_pause", icon=":material/pause:", width="stretch"):
                    session.pause()
                    st.rerun()  # redraw the button as Resume
            elif st.button("Run" if changed else "Resume", type="primary", key="gan_toy_run",
                           icon=":material/play_arrow:", width="stretch"):
                if changed:
                    fresh_session(run=True)
                else:
                    session.start(speed)
                st.rerun()  # redraw the button as Pause
            for phase in ("d", "g"):
                if st.button(f"One {phase.upper()} step", key=f"gan_toy_step_{phase}", icon=":material/skip_next:",
                             width="stretch", help="Slow mode: one discriminator update, then one generator update."):
                    if changed:
                        session = fresh_session(run=False)
                    session.pause()
                    session.single_step(phase)
            if st.button("Reset", key="gan_toy_reset", icon=":material/restart_alt:", disabled=session is None):
                session = fresh_session(run=False)
        except (RunnerBusy, ConfigError, RuntimeError) as err:
            st.error(str(err))
    with view:
        if session is None:
            st.info("Press Run to train a small GAN on the chosen 2-D distribution, or step it one D/G update at "
                    "a time. Try the ring with the bce loss and d_steps 1 to watch mode collapse.")
        elif session.status == "running":
            watch([session.id], lambda snaps: draw_toy(snaps[0]), every=0.5)
        else:
            draw_toy(session.snapshot())


# -- page ---------------------------------------------------------------------------------------------
TABS = {
    "Samples": samples_tab,
    "Interpolation": interpolation_tab,
    "Nearest training images": memorisation_tab,
    "Train": train_tab,
    "2-D toy": toy_tab,
    "Metrics & downloads": metrics_tab,
}

st.title("GANs")
st.caption("A generator learns to fool a discriminator: the textbook MLP GAN, DCGAN and a conditional DCGAN on "
           "28x28 digits, with four losses, and a 2-D toy to watch the game itself.")
picked = checkpoint_picker(FAMILIES, key="gan_model", default_family="dcgan")
if picked is not None:
    m = picked.model
    st.caption(f"{m.description} · loss {m.config.loss} · {m.num_parameters():,} parameters (G and D)")

model_tabs(TABS, "gan_tab", picked, needs_no_model=(train_tab, toy_tab))
