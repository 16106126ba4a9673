"""Self-attention from scratch: one multi-head attention layer, matrix by matrix, on a sentence you type.

The maths is genlib.families.transformers.scratch (plain torch; its tests hold it equal to torch's
own attention). This page only draws it: the sinusoids, then every named matrix of the walk as a
heatmap with its shape and token labels, section by section. Session-state keys start with ``scratch_``.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from genlib.families.transformers.scratch import (MAX_D_MODEL, MAX_HEADS, MAX_TOKENS, ONE_HEAD, AttentionWalk, Step,
                                                  attention_walk, position_wavelengths, sinusoidal_positions)
from pages._ui import require_router

require_router()

DEFAULT_SENTENCE = "the cat sat on the mat because it was warm"
PE_POSITIONS = 64        # the sinusoid plots run past the sentence, to show the waves
PER_ROW = 3              # heatmaps side by side
ANNOTATE_UP_TO = 12      # write the values into T x T maps this small


# -- drawing ----------------------------------------------------------------------------------------------
def heatmap(step: Step) -> go.Figure:
    """One matrix as a heatmap, row 0 at the top like a printed matrix; masked (-inf) cells left blank."""
    z = step.matrix.detach().cpu().double().numpy()
    z = np.where(np.isneginf(z), np.nan, z)
    weights = step.name.startswith("weights")
    square = len(step.rows) == len(step.cols) <= ANNOTATE_UP_TO and step.rows == step.cols
    fig = go.Figure(go.Heatmap(
        z=z, x=list(step.cols), y=list(step.rows), hoverongaps=False,
        colorscale="Blues" if weights else "RdBu_r", zmin=0 if weights else None, zmax=1 if weights else None,
        zmid=None if weights else 0, texttemplate="%{z:.2f}" if weights and square else None,
        hovertemplate="row %{y}<br>column %{x}<br>%{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    crowded = len(step.cols) > 10
    fig.update_xaxes(type="category", tickangle=-90 if crowded else -45 if step.cols == step.rows else 0,
                     tickfont_size=10 if crowded else None)
    fig.update_layout(title=dict(text=step.name, x=0.02), height=160 + 18 * len(step.rows),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def show_steps(steps: list[Step]) -> None:
    """Heatmaps in order, PER_ROW to a row (E, PE, X; Q, K, V; concat, Wo, out), each with its shape in the caption."""
    for start in range(0, len(steps), PER_ROW):
        for col, step in zip(st.columns(PER_ROW), steps[start:start + PER_ROW]):
            with col:
                st.plotly_chart(heatmap(step), key=f"scratch_fig_{step.name}")
                st.caption(f"**{step.name}** · `{step.formula}` · shape {step.shape[0]} × {step.shape[1]}. "
                           f"{step.explanation}")


def sinusoids(d: int, T: int) -> None:
    """A few columns of the position encoding as waves over positions, and the whole encoding as a heatmap."""
    n = max(PE_POSITIONS, T)
    pe = sinusoidal_positions(n, d).numpy()
    wavelengths = position_wavelengths(d).tolist()
    default = sorted({j for j in (0, 1, 2, 3, d // 2, d - 1) if j < d})
    dims = st.multiselect("Dimensions to plot", list(range(d)), default=default, key=f"scratch_pe_dims_{d}",
                          format_func=lambda j: f"d{j}")
    left, right = st.columns(2)
    fig = go.Figure()
    for j in dims:
        fig.add_scatter(x=list(range(n)), y=pe[:, j], mode="lines+markers", marker_size=4,
                        name=f"d{j}: {'sin' if j % 2 == 0 else 'cos'}, wavelength {wavelengths[j]:.3g}")
    fig.add_vrect(x0=-0.5, x1=T - 0.5, fillcolor="orange", opacity=0.15, line_width=0,
                  annotation_text="your sentence", annotation_position="top left")
    fig.update_layout(height=360, xaxis_title="position", yaxis_title="PE value", margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", y=-0.25))
    left.plotly_chart(fig, key="scratch_fig_sinusoids")
    left.caption(f"Each column is a sine or cosine of the position (the dots: whole-number positions); its "
                 f"wavelength grows from 2π to about 2π·10000 across the {d} columns, so nearby positions get "
                 "similar rows and far ones differ.")
    heat = go.Figure(go.Heatmap(z=pe, x=[f"d{j}" for j in range(d)], colorscale="RdBu_r", zmid=0,
                                hovertemplate="position %{y}<br>%{x}<br>%{z:.4f}<extra></extra>"))
    heat.add_hline(y=T - 0.5, line_color="orange", line_width=2)
    heat.update_yaxes(autorange="reversed", title="position")
    heat.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10))
    right.plotly_chart(heat, key="scratch_fig_pe_full")
    right.caption(f"The whole encoding, shape {n} × {d} (positions × dimensions); the rows above the orange line "
                  f"are the {T} that your sentence uses.")


def all_heads(walk: AttentionWalk) -> None:
    """Every head's softmax weights side by side, on one colour scale."""
    per_row = min(walk.heads, 4)
    n_rows = -(-walk.heads // per_row)
    labels = [f"{i} {t}" for i, t in enumerate(walk.tokens)]
    fig = make_subplots(n_rows, per_row, subplot_titles=[f"head {h + 1}" for h in range(walk.heads)],
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for h in range(walk.heads):
        fig.add_heatmap(z=walk.weights[h].numpy(), x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                        showscale=h == 0, row=h // per_row + 1, col=h % per_row + 1,
                        hovertemplate=f"head {h + 1}<br>query %{{y}}<br>key %{{x}}<br>%{{z:.3f}}<extra></extra>")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", showticklabels=len(labels) <= ANNOTATE_UP_TO)
    fig.update_layout(height=(220 + 14 * len(labels)) * n_rows, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key="scratch_fig_all_heads")
    T = len(walk.tokens)
    st.caption(f"The weights of all {walk.heads} heads, each shape {T} × {T}: each head has its own Wq and Wk "
               "columns, so each learns its own pattern of which token looks at which.")


# -- the page ------------------------------------------------------------------------------------------------
st.title("Self-attention from scratch")
st.caption("One multi-head self-attention layer on a sentence you type, in plain torch, matrix by matrix: "
           "embeddings and positions, queries, keys and values, scores, scaling, the causal mask, softmax, "
           "the weighted sum, and the heads put back together. Tokens are words (each punctuation mark is "
           "a token too); the embeddings and weights are random but fixed by the seed, as in a model before "
           "training. The tests check this layer against PyTorch's own attention.")

sentence = st.text_input(f"Sentence (at most {MAX_TOKENS} words)", DEFAULT_SENTENCE, key="scratch_sentence",
                         max_chars=400)
a, b, c, e = st.columns(4)
d_model = int(a.number_input("d_model (width)", 1, MAX_D_MODEL, 16, key="scratch_d_model",
                             help="The width of every token vector."))
heads = int(b.number_input("Heads", 1, MAX_HEADS, 2, key="scratch_heads",
                           help="Must divide d_model: each head gets d_model / heads columns."))
seed = int(c.number_input("Seed", 0, 2**31 - 1, 0, key="scratch_seed",
                          help="Draws the word embeddings and the projection weights."))
causal = e.toggle("Causal mask", value=False, key="scratch_causal",
                  help="On: a token attends only to itself and earlier tokens, as in a GPT.")

try:
    walk = attention_walk(sentence, d_model=d_model, heads=heads, causal=causal, seed=seed)
except ValueError as err:
    st.error(str(err))
    st.stop()

T = len(walk.tokens)
st.markdown(f"**{T} tokens:** " + " ".join(f"`{i} {t}`" for i, t in enumerate(walk.tokens)))
st.caption(f"T = {T} tokens, d_model = {d_model}, {heads} head{'s' if heads > 1 else ''} of d_k = {walk.d_k} "
           f"columns each{', causal' if causal else ''}.")

st.header("1 · Positional encoding")
sinusoids(d_model, T)

for number, title in enumerate(walk.sections, start=2):
    st.header(f"{number} · {title}")
    head = None
    if title == ONE_HEAD:
        if heads > 1:
            head = st.segmented_control("Head", list(range(heads)), default=0, key=f"scratch_head_{heads}",
                                        format_func=lambda h: f"head {h + 1}")
        head = 0 if head is None else head
        st.caption(f"Head {head + 1} of {heads}: columns {head * walk.d_k} to {(head + 1) * walk.d_k - 1} of Q, K "
                   "and V.")
    elif title == walk.sections[-1]:
        all_heads(walk)
    show_steps(walk.section(title, head=head))
