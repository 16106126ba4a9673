"""The attention explorer's three views of an ``AttentionRecord``, as plotly figures and as PNGs.

- head view: one layer's token-to-token attention. Up to ``LINE_VIEW_MAX_TOKENS`` tokens it is
  BertViz's two columns of tokens joined by lines (opacity = weight, one colour per head); longer
  inputs get a heatmap (query rows x key columns) of the heads' mean or of one head, pooled to at
  most ``HEATMAP_MAX_CELLS`` per side, so a 1,000-token input stays a few hundred kB.
- model view: every layer x head as a thumbnail, all drawn as ONE heatmap mosaic (NaN gaps between
  thumbnails) pooled to ``THUMB_TOKENS`` per side, with one invisible marker per thumbnail whose
  customdata is (layer, head), so a click (a point selection) names the head to open.
- neuron view: for one query token, its query vector q, every key vector k_j, their elementwise
  product q*k_j, the scores sum(q*k_j)/sqrt(d) and the model's probabilities.

Layers and heads are given by their original numbers (``record.layer_ids``/``head_ids``), query
positions by their position in the input (``record.offset`` + index). The PNGs are drawn with
matplotlib from the same arrays (kaleido is not needed); HTML embeds plotly.js, never a CDN script.
"""
from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from genlib.families.transformers.attention import AttentionRecord, neuron_data

LINE_VIEW_MAX_TOKENS = 40   # above this, lines become a tangle (and thousands of shapes): a heatmap
LINE_MIN_WEIGHT = 0.02      # lines lighter than this are not drawn
HEATMAP_MAX_CELLS = 256     # a longer window is pooled (block means) to this many rows and columns
THUMB_TOKENS = 32           # model view thumbnails are pooled to this many cells per side
LABEL_MAX_TOKENS = 80       # up to this many tokens every one is named on the axes
HEAD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d")
# weight buckets for the line view: lines in one bucket share an opacity, so a head is a few traces
LINE_LEVELS = ((0.02, 0.1, 0.15), (0.1, 0.3, 0.35), (0.3, 0.6, 0.6), (0.6, 1.01, 0.95))


# -- shared data preparation ----------------------------------------------------------------------------
def _layer_index(record: AttentionRecord, layer: int) -> int:
    if layer not in record.layer_ids:
        raise ValueError(f"layer {layer} is not shown; the record has layers {record.layer_ids}")
    return record.layer_ids.index(layer)


def _head_indices(record: AttentionRecord, heads: list[int] | None) -> list[int]:
    if heads is None:
        return list(range(record.n_heads))
    missing = [h for h in heads if h not in record.head_ids]
    if missing or not heads:
        raise ValueError(f"heads {missing or heads} are not shown; the record has heads {record.head_ids}")
    return [record.head_ids.index(h) for h in heads]


def label(record: AttentionRecord, index: int) -> str:
    """'12 · the': a token's position in the input and its text (record-local ``index``)."""
    return f"{record.offset + index} · {record.tokens[index]}"


def pool(matrix: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Block means of a (T, T) matrix down to at most (cells, cells); returns it and the (n+1,) bin
    edges (record-local positions). Unchanged when T <= cells."""
    length = matrix.shape[-1]
    if length <= cells:
        return matrix, np.arange(length + 1)
    edges = np.linspace(0, length, cells + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(matrix, edges[:-1], axis=-2), edges[:-1], axis=-1)
    sizes = np.diff(edges)
    return sums / (sizes[:, None] * sizes[None, :]), edges


def head_matrix(record: AttentionRecord, layer: int, heads: list[int] | None = None) -> np.ndarray:
    """(T, T) attention of ``layer``: the mean over ``heads`` (all when None), or one head's."""
    return record.attentions[_layer_index(record, layer)][_head_indices(record, heads)].mean(axis=0)


def _title(record: AttentionRecord, what: str) -> str:
    span = f"tokens {record.offset}–{record.offset + record.n_tokens - 1}"
    return f"{what} · {record.model_name or 'model'} · {span}"


def _heads_text(record: AttentionRecord, heads: list[int] | None) -> str:
    chosen = heads if heads is not None else record.head_ids
    return f"head {chosen[0]}" if len(chosen) == 1 else f"mean of heads {_ranges(chosen)}"


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0–2, 5'."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(f"{start}" if start == n else f"{start}–{n}")
            start = None
    return ", ".join(parts)


def _line_segments(record: AttentionRecord, layer: int, heads: list[int] | None, combine: str):
    """[(name, colour, [(i, j, weight), ...])]: one entry per head ("each") or one for their mean."""
    attn = record.attentions[_layer_index(record, layer)]            # (H, T, T)
    picked = _head_indices(record, heads)
    if combine == "mean" or len(picked) == 1:
        groups = [(_heads_text(record, heads), HEAD_COLOURS[picked[0] % len(HEAD_COLOURS)] if len(picked) == 1
                   else "#444444", attn[picked].mean(axis=0))]
    else:
        groups = [(f"head {record.head_ids[h]}", HEAD_COLOURS[record.head_ids[h] % len(HEAD_COLOURS)], attn[h])
                  for h in picked]
    out = []
    for name, colour, matrix in groups:
        i, j = np.nonzero(matrix >= LINE_MIN_WEIGHT)
        out.append((name, colour, list(zip(i.tolist(), j.tolist(), matrix[i, j].tolist()))))
    return out


# -- head view --------------------------------------------------------------------------------------------
def head_view(record: AttentionRecord, layer: int, heads: list[int] | None = None, combine: str = "each",
              style: str = "auto") -> go.Figure:
    """One layer's attention: ``style`` "lines" (BertViz's two columns; ``combine`` "each" draws each
    head in its colour, "mean" their mean), "heatmap" (the mean of ``heads``, or one head), or "auto":
    lines up to LINE_VIEW_MAX_TOKENS tokens, a heatmap above."""
    if style == "auto":
        style = "lines" if record.n_tokens <= LINE_VIEW_MAX_TOKENS else "heatmap"
    if style == "lines":
        return _line_figure(record, layer, heads, combine)
    return _heatmap_figure(record, layer, heads)


def _line_figure(record: AttentionRecord, layer: int, heads: list[int] | None, combine: str) -> go.Figure:
    fig = go.Figure()
    n, shown = record.n_tokens, set()
    for name, colour, segments in _line_segments(record, layer, heads, combine):
        for k, (lo, hi, opacity) in enumerate(LINE_LEVELS):
            xs, ys = [], []
            for i, j, w in segments:
                if lo <= w < hi:
                    xs += [0, 1, None]
                    ys += [i, j, None]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=1 + 2 * opacity),
                                         opacity=opacity, name=name, legendgroup=name, hoverinfo="skip",
                                         showlegend=name not in shown))
                shown.add(name)
    names = [label(record, i) for i in range(n)]
    for x, anchor in ((0, "left"), (1, "right")):
        fig.add_trace(go.Scatter(x=[x] * n, y=list(range(n)), mode="markers+text", text=record.tokens,
                                 textposition=f"middle {anchor}", marker=dict(size=5, color="#888"),
                                 hovertext=names, hoverinfo="text", showlegend=False))
    fig.update_layout(title=_title(record, f"Head view · layer {layer}"), height=max(320, 22 * n + 100),
                      margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
                      legend=dict(orientation="h", y=0, x=0.5, xanchor="center", yanchor="top"))
    fig.update_xaxes(range=[-0.8, 1.8], visible=False)
    fig.update_yaxes(range=[n - 0.5, -0.5], visible=False)
    fig.add_annotation(x=0, y=-0.5, yshift=12, text="<b>query</b>", showarrow=False)
    fig.add_annotation(x=1, y=-0.5, yshift=12, text="<b>key</b>", showarrow=False)
    return fig


def _ticks(record: AttentionRecord, edges: np.ndarray) -> tuple[list[float], list[str]]:
    """Axis ticks at bin centres: every token's label when few, about 30 position labels when many."""
    centres = (edges[:-1] + edges[1:] - 1) / 2
    if len(edges) - 1 <= LABEL_MAX_TOKENS and (np.diff(edges) == 1).all():
        return centres.tolist(), [label(record, i) for i in range(len(centres))]
    step = max(1, (len(centres) + 29) // 30)
    picks = range(0, len(centres), step)
    return [float(centres[p]) for p in picks], [label(record, int(edges[p])) for p in picks]


def _heatmap_figure(record: AttentionRecord, layer: int, heads: list[int] | None) -> go.Figure:
    z, edges = pool(head_matrix(record, layer, heads), HEATMAP_MAX_CELLS)
    centres = (edges[:-1] + edges[1:] - 1) / 2            # bins drawn at their middle position
    pooled = len(edges) - 1 < record.n_tokens
    if pooled:
        hover = "queries near %{y:.0f} → keys near %{x:.0f}: %{z:.4f} (block mean)<extra></extra>"
        text = None
    else:
        hover = "%{text}: %{z:.4f}<extra></extra>"
        text = [[f"{label(record, i)} → {label(record, j)}" for j in range(record.n_tokens)]
                for i in range(record.n_tokens)] if record.n_tokens <= LABEL_MAX_TOKENS else None
        if text is None:
            hover = "query %{y:.0f} → key %{x:.0f}: %{z:.4f}<extra></extra>"
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), x=centres + record.offset, y=centres + record.offset,
                               text=text, hovertemplate=hover, colorscale="Blues", zmin=0,
                               colorbar=dict(title="weight", thickness=12)))
    tickvals, ticktext = _ticks(record, edges)
    tickvals = [v + record.offset for v in tickvals]
    what = f"Head view · layer {layer} · {_heads_text(record, heads)}" + (" · pooled" if pooled else "")
    fig.update_layout(title=_title(record, what), height=720, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title="key", tickvals=tickvals, ticktext=ticktext, tickangle=-60)
    fig.update_yaxes(title="query", tickvals=tickvals, ticktext=ticktext, autorange="reversed")
    return fig


# -- model view -------------------------------------------------------------------------------------------
def mosaic(record: AttentionRecord, thumb_tokens: int = THUMB_TOKENS) -> np.ndarray:
    """(layers * (t+1) - 1, heads * (t+1) - 1) float32: each head's attention pooled to t x t and scaled
    to its own 99th percentile, clipped at 1 (so a faint head's pattern still shows, and one cell that
    takes most of the weight, such as the first token, does not wash the rest out), NaN in the gaps."""
    t = min(thumb_tokens, record.n_tokens)
    out = np.full((record.n_layers * (t + 1) - 1, record.n_heads * (t + 1) - 1), np.nan, dtype=np.float32)
    for li, attn in enumerate(record.attentions):
        for hi in range(record.n_heads):
            thumb, _ = pool(attn[hi], t)
            top = float(np.percentile(thumb, 99))
            scaled = np.clip(thumb / top, 0, 1) if top > 0 else thumb
            out[li * (t + 1): li * (t + 1) + t, hi * (t + 1): hi * (t + 1) + t] = scaled
    return out


def model_view(record: AttentionRecord, thumb_tokens: int = THUMB_TOKENS) -> go.Figure:
    """Every layer x head as a thumbnail; a click on one selects a point whose customdata is
    [layer, head] (their original numbers), for ``st.plotly_chart(on_select=...)``."""
    z = mosaic(record, thumb_tokens)
    t = min(thumb_tokens, record.n_tokens)
    step = 1.0 / (t + 1)                              # one thumbnail (+ its gap) spans one axis unit
    start = -0.5 + step / 2
    fig = go.Figure(go.Heatmap(z=z, x0=start, dx=step, y0=start, dy=step, colorscale="Blues", showscale=False,
                               hoverinfo="skip"))
    cols, rows = np.meshgrid(np.arange(record.n_heads), np.arange(record.n_layers))
    centre = (t / 2 - 0.5) * step - 0.5 + step / 2    # the middle of thumbnail 0
    custom = [[record.layer_ids[r], record.head_ids[c]] for r, c in zip(rows.ravel(), cols.ravel())]
    fig.add_trace(go.Scatter(x=cols.ravel() + centre, y=rows.ravel() + centre, mode="markers",
                             marker=dict(size=max(8, 480 // max(record.n_heads, record.n_layers)), symbol="square",
                                         color="rgba(0,0,0,0)"),
                             customdata=custom, hovertemplate="layer %{customdata[0]} · head %{customdata[1]}"
                             "<br>click to open in the head view<extra></extra>", showlegend=False))
    cell = max(60, min(120, 900 // max(record.n_heads, record.n_layers)))
    fig.update_layout(title=_title(record, "Model view · each thumbnail scaled to its own 99th percentile"),
                      height=max(300, cell * record.n_layers + 90), margin=dict(l=10, r=10, t=50, b=10),
                      plot_bgcolor="white", clickmode="event+select", dragmode=False)
    fig.update_xaxes(tickvals=list(range(record.n_heads)), ticktext=[f"head {h}" for h in record.head_ids],
                     side="top", showgrid=False, zeroline=False, range=[-0.5, record.n_heads - 0.5])
    fig.update_yaxes(tickvals=list(range(record.n_layers)), ticktext=[f"layer {layer}" for layer in record.layer_ids],
                     autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x")
    return fig


def picked_thumbnail(points: list[dict]) -> tuple[int, int] | None:
    """(layer, head) named by a model-view selection's points (``st.plotly_chart`` selection
    ``points``), or None when none of them is a thumbnail marker."""
    for point in points:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) == 2:
            return int(data[0]), int(data[1])
    return None


# -- neuron view ------------------------------------------------------------------------------------------
def _neuron(record: AttentionRecord, layer: int, head: int, query: int):
    local = query - record.offset
    if not 0 <= local < record.n_tokens:
        raise ValueError(f"query position {query} is outside the window {record.offset}–"
                         f"{record.offset + record.n_tokens - 1}")
    return local, neuron_data(record, _layer_index(record, layer), _head_indices(record, [head])[0], local)


def neuron_view(record: AttentionRecord, layer: int, head: int, query: int) -> go.Figure:
    """For the token at input position ``query``: q (top), each key k_j, q*k_j, the score
    sum(q*k_j)/sqrt(d) (masked keys: none) and the model's probability, one row per key."""
    local, data = _neuron(record, layer, head, query)
    d, n = data.query.shape[0], record.n_tokens
    names = [label(record, j) for j in range(n)]
    height = max(420, 16 * n + 190)
    plot = height - 90                                # minus the margins: fractions below are of this
    fig = make_subplots(rows=2, cols=4, row_heights=[40 / plot, 1 - 40 / plot], column_widths=[0.3, 0.3, 0.2, 0.2],
                        specs=[[{"colspan": 2}, None, None, None], [{}, {}, {}, {}]], shared_yaxes=False,
                        horizontal_spacing=0.04, vertical_spacing=60 / plot,
                        subplot_titles=(f"query q of {label(record, local)!r} (d = {d})", "keys k_j", "q ⊙ k_j",
                                        "score q·k_j / √d", "probability"))
    top = float(np.abs(np.concatenate([data.keys.ravel(), data.query])).max()) or 1.0
    product_top = float(np.abs(data.product).max()) or 1.0
    fig.add_trace(go.Heatmap(z=data.query[None, :], colorscale="RdBu", zmid=0, zmin=-top, zmax=top, showscale=False,
                             hovertemplate="q[%{x}] = %{z:.3f}<extra></extra>"), 1, 1)
    rows = list(range(n))
    fig.add_trace(go.Heatmap(z=data.keys, y=rows, colorscale="RdBu", zmid=0, zmin=-top, zmax=top, showscale=False,
                             hovertemplate="k[%{x}] = %{z:.3f}<extra></extra>"), 2, 1)
    fig.add_trace(go.Heatmap(z=data.product, y=rows, colorscale="PiYG", zmid=0, zmin=-product_top, zmax=product_top,
                             showscale=False, hovertemplate="q[%{x}]·k[%{x}] = %{z:.3f}<extra></extra>"), 2, 2)
    finite = np.where(np.isfinite(data.scores), data.scores, np.nan)
    fig.add_trace(go.Bar(x=finite, y=rows, orientation="h", marker_color="#6a51a3", hovertext=names,
                         hovertemplate="%{hovertext}: score %{x:.3f}<extra></extra>", showlegend=False), 2, 3)
    fig.add_trace(go.Bar(x=data.probs, y=rows, orientation="h", marker_color="#2171b5", hovertext=names,
                         hovertemplate="%{hovertext}: p = %{x:.4f}<extra></extra>", showlegend=False), 2, 4)
    tickvals, ticktext = _ticks(record, np.arange(n + 1))
    for col in range(1, 5):
        fig.update_yaxes(autorange="reversed", row=2, col=col, showticklabels=col == 1,
                         tickvals=tickvals, ticktext=ticktext)
        fig.update_xaxes(row=2, col=col, title="dimension" if col <= 2 else None)
    fig.update_yaxes(visible=False, row=1, col=1)
    masked = " · keys after the query are masked" if record.causal else ""
    fig.update_layout(title=_title(record, f"Neuron view · layer {layer} · head {head}{masked}"),
                      height=height, margin=dict(l=10, r=10, t=80, b=10), bargap=0.1)
    return fig


# -- export -----------------------------------------------------------------------------------------------
def figure_html(fig: go.Figure) -> bytes:
    """A self-contained HTML page of ``fig``: plotly.js is embedded, so it opens offline."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False}).encode("utf-8")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _mpl_ticks(ax, record: AttentionRecord, edges: np.ndarray, axis: str) -> None:
    values, texts = _ticks(record, edges)
    if axis in ("x", "both"):
        ax.set_xticks(values, texts, rotation=70, fontsize=7)
    if axis in ("y", "both"):
        ax.set_yticks(values, texts, fontsize=7)


def head_view_png(record: AttentionRecord, layer: int, heads: list[int] | None = None, combine: str = "each",
                  style: str = "auto") -> bytes:
    """The head view as a PNG (matplotlib, the same data and the same choice of lines or heatmap)."""
    if style == "auto":
        style = "lines" if record.n_tokens <= LINE_VIEW_MAX_TOKENS else "heatmap"
    n = record.n_tokens
    if style == "lines":
        fig = Figure(figsize=(6, max(3.0, 0.24 * n + 1)))
        ax = fig.add_subplot()
        for name, colour, segments in _line_segments(record, layer, heads, combine):
            lines = [[(0, i), (1, j)] for i, j, _ in segments]
            alphas = [min(1.0, 0.1 + w) for _, _, w in segments]
            ax.add_collection(LineCollection(lines, colors=colour, alpha=alphas, linewidths=1.5, label=name))
        for i, token in enumerate(record.tokens):
            ax.text(-0.03, i, token, ha="right", va="center", fontsize=8)
            ax.text(1.03, i, token, ha="left", va="center", fontsize=8)
        ax.set_xlim(-0.8, 1.8)
        ax.set_ylim(n - 0.5, -0.5)
        ax.axis("off")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7, frameon=False)
    else:
        z, edges = pool(head_matrix(record, layer, heads), HEATMAP_MAX_CELLS)
        fig = Figure(figsize=(8, 7.5))
        ax = fig.add_subplot()
        image = ax.imshow(z, cmap="Blues", vmin=0, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label="weight")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        if len(edges) - 1 == n:
            _mpl_ticks(ax, record, edges, "both")
        else:  # pooled: image pixel p is the bin starting at position edges[p]
            step = max(1, (len(edges) + 28) // 30)
            picks = list(range(0, len(edges) - 1, step))
            ax.set_xticks(picks, [label(record, int(edges[p])) for p in picks], rotation=70, fontsize=7)
            ax.set_yticks(picks, [label(record, int(edges[p])) for p in picks], fontsize=7)
    fig.suptitle(_title(record, f"Head view · layer {layer} · {_heads_text(record, heads)}"), fontsize=9)
    return _png(fig)


def model_view_png(record: AttentionRecord, thumb_tokens: int = THUMB_TOKENS) -> bytes:
    """The model view as a PNG: the same mosaic, one thumbnail per layer x head."""
    z = mosaic(record, thumb_tokens)
    t = min(thumb_tokens, record.n_tokens)
    scale = 0.9 if max(record.n_heads, record.n_layers) <= 8 else 0.6
    fig = Figure(figsize=(max(3.0, scale * record.n_heads + 1), max(3.0, scale * record.n_layers + 1)))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(z), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    centres = [i * (t + 1) + (t - 1) / 2 for i in range(max(record.n_heads, record.n_layers))]
    ax.set_xticks(centres[:record.n_heads], [f"head {h}" for h in record.head_ids], fontsize=7, rotation=60)
    ax.set_yticks(centres[:record.n_layers], [f"layer {layer}" for layer in record.layer_ids], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(_title(record, "Model view"), fontsize=9, y=0.02)
    return _png(fig)


def neuron_view_png(record: AttentionRecord, layer: int, head: int, query: int) -> bytes:
    """The neuron view as a PNG: q, the keys, q*k, scores and probabilities side by side."""
    local, data = _neuron(record, layer, head, query)
    n, d = record.n_tokens, data.query.shape[0]
    fig = Figure(figsize=(11, max(3.5, min(20.0, 0.18 * n + 2))))
    grid = fig.add_gridspec(2, 4, height_ratios=[1, max(4, n // 2)], width_ratios=[3, 3, 2, 2], hspace=0.15)
    top = float(np.abs(np.concatenate([data.keys.ravel(), data.query])).max()) or 1.0
    ax_q = fig.add_subplot(grid[0, :2])
    ax_q.imshow(data.query[None, :], cmap="RdBu", vmin=-top, vmax=top, aspect="auto")
    ax_q.set_yticks([])
    ax_q.set_title(f"query q of {label(record, local)!r} (d = {d})", fontsize=8)
    axes = [fig.add_subplot(grid[1, c]) for c in range(4)]
    axes[0].imshow(data.keys, cmap="RdBu", vmin=-top, vmax=top, aspect="auto", interpolation="nearest")
    product_top = float(np.abs(data.product).max()) or 1.0
    axes[1].imshow(data.product, cmap="PiYG", vmin=-product_top, vmax=product_top, aspect="auto",
                   interpolation="nearest")
    rows = np.arange(n)
    # hlines: one LineCollection each, where barh would make a patch per key (seconds for 1,000 keys)
    width = max(1.0, min(8.0, 300 / n))
    axes[2].hlines(rows, 0, np.where(np.isfinite(data.scores), data.scores, 0.0), color="#6a51a3", linewidth=width)
    axes[2].axvline(0, color="#999", linewidth=0.5)
    axes[3].hlines(rows, 0, data.probs, color="#2171b5", linewidth=width)
    axes[3].set_xlim(left=0)
    for ax, title in zip(axes, ("keys k_j", "q ⊙ k_j", "score q·k_j / √d", "probability")):
        ax.set_title(title, fontsize=8)
        ax.set_ylim(n - 0.5, -0.5)
        if ax is not axes[0]:
            ax.set_yticks([])
    _mpl_ticks(axes[0], record, np.arange(n + 1), "y")
    fig.suptitle(_title(record, f"Neuron view · layer {layer} · head {head}"), fontsize=9)
    return _png(fig)


def size_of(fig: go.Figure) -> int:
    """Bytes of a figure's JSON (what the browser receives), to keep long inputs light."""
    return len(fig.to_json())


__all__ = ["figure_html", "head_view", "head_view_png", "model_view", "model_view_png", "neuron_view",
           "neuron_view_png", "picked_thumbnail", "pool", "mosaic", "head_matrix", "size_of", "label"]
