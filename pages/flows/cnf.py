"""The 2-D continuous normalizing flow tab (FFJORD): train one live on a toy distribution, then read
its density as a heatmap, the paths of points from noise to data with a time slider, its exact
held-out log-likelihood and the solver's function evaluations.

Drawing only; the flow is ``genlib.families.flows.cnf2d``. Session-state keys start with ``flow_cnf``.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from genlib import background
from genlib.background import RunnerBusy, Snapshot
from genlib.config import ConfigError
from genlib.families.flows.cnf2d import CNFConfig, CNFSession, CNFSnapshot, start_cnf_session
from pages._ui import visitor_token, watch
from pages._widgets import config_widgets, make_config

FIELDS = ("distribution", "hidden", "hidden_layers", "lr", "steps", "tolerance", "seed")


def density_figure(picture: CNFSnapshot) -> go.Figure:
    """The model's density on the grid, with the training points over it."""
    lo, hi = picture.bounds
    axis = np.linspace(lo, hi, picture.density.shape[0])
    fig = go.Figure(go.Heatmap(x=axis, y=axis, z=picture.density, colorscale="Viridis", colorbar=dict(title="p(x)")))
    fig.add_trace(go.Scatter(x=picture.data[:, 0], y=picture.data[:, 1], mode="markers", name="data",
                             marker=dict(size=3, color="white", opacity=0.6)))
    fig.update_layout(height=430, margin=dict(l=10, r=10, t=40, b=10), title=f"model density at step {picture.step}",
                      xaxis=dict(range=[lo, hi], constrain="domain"),
                      yaxis=dict(range=[lo, hi], scaleanchor="x", constrain="domain"), showlegend=False,
                      uirevision="cnf-density")
    return fig


def trajectory_figure(picture: CNFSnapshot, index: int) -> go.Figure:
    """Where 300 base points are at time index ``index`` (0: t=1, noise; last: t=0, data), with their paths so far."""
    paths = picture.trajectories                     # (T,N,2), from t=1 to t=0
    steps = paths.shape[0]
    t = 1 - index / (steps - 1)
    lo, hi = picture.bounds
    fig = go.Figure()
    shown = paths[: index + 1, ::3]                  # every third path, so the lines stay readable
    xs, ys = [], []
    for n in range(shown.shape[1]):
        xs += list(shown[:, n, 0]) + [None]
        ys += list(shown[:, n, 1]) + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(width=1, color="rgba(120,120,120,0.4)"),
                             name="paths"))
    fig.add_trace(go.Scatter(x=paths[index, :, 0], y=paths[index, :, 1], mode="markers", name=f"t = {t:.2f}",
                             marker=dict(size=4, color="#4f46e5")))
    fig.update_layout(height=430, margin=dict(l=10, r=10, t=40, b=10), title=f"points at t = {t:.2f} (1 = noise, 0 = "
                      "data)", xaxis=dict(range=[lo, hi], constrain="domain"),
                      yaxis=dict(range=[lo, hi], scaleanchor="x", constrain="domain"), showlegend=False)
    return fig


def curves_figure(picture: CNFSnapshot) -> go.Figure:
    """The training loss (negative log-likelihood, nats per point) and the NFE per step."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    steps = list(range(1, len(picture.losses) + 1))
    fig.add_trace(go.Scatter(x=steps, y=picture.losses, name="−log p(x), nats"), secondary_y=False)
    fig.add_trace(go.Scatter(x=steps, y=picture.nfe, name="function evaluations", line=dict(dash="dot")),
                  secondary_y=True)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.15))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="nats ↓", secondary_y=False)
    fig.update_yaxes(title_text="NFE", secondary_y=True)
    return fig


def draw(snap: Snapshot) -> None:
    """The run's pictures, figures and status."""
    picture: CNFSnapshot = snap.state
    if snap.status == "failed":
        st.error(f"{snap.message}.")
    if picture is None or picture.density is None:
        st.progress(snap.fraction, text=snap.message)
        st.caption("The first picture comes after the first few steps.")
        return
    st.progress(snap.fraction, text=snap.message)
    left, right = st.columns(2)
    left.plotly_chart(density_figure(picture), key="flow_cnf_density")
    with right:
        steps = picture.trajectories.shape[0]
        index = st.slider("Time (from noise to data)", 0, steps - 1, steps - 1, key="flow_cnf_time",
                          help="Watch the ODE carry points from the Gaussian base (t = 1) to the data (t = 0).")
        st.plotly_chart(trajectory_figure(picture, index), key="flow_cnf_paths")
    cols = st.columns(3)
    cols[0].metric("held-out exact log-likelihood", f"{picture.test_log_likelihood:.3f} nats",
                   help="Mean log p(x) of 2,000 fresh points of the distribution, by the ODE (exact trace).")
    cols[1].metric("NFE, last training step", f"{picture.nfe[-1]}")
    cols[2].metric("NFE, density picture", f"{picture.density_nfe}")
    st.plotly_chart(curves_figure(picture), key="flow_cnf_curves")


def cnf_tab() -> None:
    st.markdown("A **continuous** normalizing flow (FFJORD): an ODE dz/dt = f(z, t) carries data to a Gaussian, and "
                "the log-density changes by the trace of f's Jacobian along the way. In 2-D that trace is exact, so "
                "the log-likelihood is too (up to the solver's tolerance). The solver's function evaluations (NFE) "
                "grow as the learned dynamics get more complex.")
    settings, view = st.columns([1, 3], gap="large")
    session = background.get(st.session_state.get("flow_cnf_id"))
    session = session if isinstance(session, CNFSession) else None
    with settings:
        values = config_widgets(CNFConfig, "flow_cnf", only=FIELDS, columns=1)
        config = make_config(CNFConfig, values)
        running = session is not None and session.status == "running"
        if st.button("Train", type="primary", key="flow_cnf_start", icon=":material/play_arrow:", width="stretch",
                     disabled=config is None):
            if session is not None:
                session.cancel()
            try:
                session = start_cnf_session(config, owner=visitor_token())
            except (RunnerBusy, ConfigError) as err:
                st.error(str(err))
            else:
                st.session_state["flow_cnf_id"] = session.id
                st.rerun()
        if running and st.button("Cancel", key="flow_cnf_cancel", icon=":material/stop:", width="stretch"):
            session.cancel()
            st.rerun()
    with view:
        if session is None:
            st.info("Press Train to fit a continuous flow to the chosen 2-D distribution; the density and the paths "
                    "of points appear as it learns (about a minute for the defaults on one CPU core).")
        elif session.status == "running":
            watch([session.id], lambda snaps: draw(snaps[0]), every=1.0)
        else:
            draw(session.snapshot())
