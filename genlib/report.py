"""The comparison report: plotly figures, the scoreboard table, and the files a user downloads.

The Compare page and ``python -m genlib compare`` both build it from a ``Comparison``:

    report/
      grids/<model>.png   one sample grid per model; the seed and model id are in the PNG's text chunks
      scoreboard.csv      one row per model and reference set, every metric ("" when n/a)
      scoreboard.json     the same, with the reason for every n/a
      report.html         one self-contained page: grids, scoreboard and the charts
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from genlib.comparison import Comparison
from genlib.images import from_uint8, to_grid, to_png
from genlib.scoring import METRICS, Scorecard, is_number, scoreboard_rows

GRID_SCALE = 2
REFERENCE_LINES = ("real test digits", "blurred digits (σ=1)", "noisy digits (σ=0.3)")


# -- tables ------------------------------------------------------------------------------------------------
def scoreboard_frame(comparison: Comparison) -> pd.DataFrame:
    """The scoreboard: one row per model then per reference set; numeric columns (NaN when n/a)."""
    frame = pd.DataFrame(scoreboard_rows(comparison.cards))
    for spec in METRICS:
        frame[spec.key] = pd.to_numeric(frame[spec.key], errors="coerce")
    return frame


def scorecard_png(card: Scorecard, seed: int, scale: int = GRID_SCALE) -> bytes:
    """A scorecard's sample grid as PNG, with the model id, family and seed in its metadata."""
    grid = to_grid(from_uint8(card.grid), nrow=card.grid_nrow)
    return to_png(grid, {"model": card.name, "family": card.family, "seed": str(seed), "source": "genlib compare"},
                  scale)


def safe_name(name: str) -> str:
    """A model id as a file name (hub ids contain '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


# -- figures ------------------------------------------------------------------------------------------------
def _scatter_against(comparison: Comparison, x_key: str, x_title: str, title: str) -> go.Figure:
    fig = go.Figure()
    for card in comparison.models:
        x, y = card.metrics.get(x_key), card.metrics.get("frechet_distance")
        if is_number(x) and is_number(y):
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", text=[card.name], textposition="top center",
                                     name=card.name, marker={"size": 12}))
    for card in comparison.references:
        y = card.metrics.get("frechet_distance")
        if card.name in REFERENCE_LINES and is_number(y):
            fig.add_hline(y=y, line_dash="dot", line_color="grey", annotation_text=card.name,
                          annotation_position="bottom right")
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="Fréchet distance (lower is better)",
                      xaxis_type="log", yaxis_type="log", height=420, showlegend=False)
    return fig


def quality_vs_time(comparison: Comparison) -> go.Figure:
    """Fréchet distance against sampling time per image; dotted lines mark reference sets."""
    return _scatter_against(comparison, "sample_ms_per_image", "sampling time per image (ms, log)",
                            "Quality against sampling time")


def quality_vs_parameters(comparison: Comparison) -> go.Figure:
    """Fréchet distance against parameter count."""
    return _scatter_against(comparison, "num_parameters", "parameters (log)", "Quality against size")


def likelihood_chart(comparison: Comparison) -> go.Figure:
    """Bits/dim of every model that has a likelihood: exact values solid, bounds hatched."""
    fig = go.Figure()
    for kind, pattern, label in (("exact", "", "exact −log p(x)"), ("bound", "/", "upper bound (e.g. −ELBO)")):
        cards = [c for c in comparison.models if c.metrics.get("likelihood") == kind
                 and is_number(c.metrics.get("bits_per_dim"))]
        if cards:
            fig.add_trace(go.Bar(x=[c.name for c in cards], y=[c.metrics["bits_per_dim"] for c in cards], name=label,
                                 marker_pattern_shape=pattern, text=[f"{c.metrics['bits_per_dim']:.3f}" for c in cards]))
    fig.update_layout(title="Likelihood on the test digits (bits/dim, lower is better)", yaxis_title="bits/dim",
                      height=380, legend_title="value")
    return fig


def class_histograms(comparison: Comparison) -> go.Figure:
    """The predicted-class histograms of every model, overlaid; a collapsed model shows spikes."""
    fig = go.Figure()
    for card in comparison.models:
        if card.class_counts:
            total = max(1, sum(card.class_counts))
            fig.add_trace(go.Bar(x=list(range(len(card.class_counts))), y=[c / total for c in card.class_counts],
                                 name=card.name, opacity=0.55))
    fig.add_hline(y=0.1, line_dash="dot", line_color="grey", annotation_text="uniform (real digits)")
    fig.update_layout(barmode="overlay", title="Class histogram of the samples (digit classifier)",
                      xaxis_title="predicted digit", yaxis_title="share of samples", height=380,
                      xaxis={"tickmode": "linear"})
    return fig


FIGURES = (quality_vs_time, quality_vs_parameters, likelihood_chart, class_histograms)


# -- files --------------------------------------------------------------------------------------------------
def report_files(comparison: Comparison) -> dict[str, bytes]:
    """Every file of the report, by relative path."""
    frame = scoreboard_frame(comparison)
    files: dict[str, bytes] = {}
    grids = {card.name: scorecard_png(card, comparison.seed) for card in comparison.cards if card.grid is not None}
    for name, png in grids.items():
        files[f"grids/{safe_name(name)}.png"] = png
    files["scoreboard.csv"] = frame.to_csv(index=False).encode()
    payload = {"seed": comparison.seed, "models": [c.summary() for c in comparison.models],
               "references": [c.summary() for c in comparison.references], "errors": comparison.errors,
               "metrics": [{"key": m.key, "label": m.label, "better": m.better, "help": m.help} for m in METRICS]}
    files["scoreboard.json"] = json.dumps(payload, indent=2).encode()
    files["report.html"] = report_html(comparison, frame, grids).encode()
    return files


def report_html(comparison: Comparison, frame: pd.DataFrame, grids: dict[str, bytes]) -> str:
    """One self-contained HTML page (images inline, plotly.js inline): it opens offline."""
    def img(name: str) -> str:
        data = base64.b64encode(grids[name]).decode()
        return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>")

    charts = [fig(comparison).to_html(full_html=False, include_plotlyjs=(i == 0))
              for i, fig in enumerate(FIGURES)]
    table = frame.drop(columns=["kind"]).to_html(index=False, na_rep="n/a", float_format=lambda v: f"{v:.4g}")
    errors = "".join(f"<li>{html.escape(s)}: {html.escape(e)}</li>" for s, e in comparison.errors.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genlib comparison (seed {comparison.seed})</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:.5em}}
img{{image-rendering:pixelated}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}</style></head><body>
<h1>Model comparison</h1><p>Seed {comparison.seed}. Models: {html.escape(', '.join(c.name for c in comparison.models))}.
Metrics are measured against the 4,000 training digits in the digit classifier's features.</p>
{f'<h2>Could not compare</h2><ul>{errors}</ul>' if errors else ''}
<h2>Samples</h2>{''.join(img(c.name) for c in comparison.models if c.name in grids)}
<h2>Scoreboard</h2>{table}
<h2>Charts</h2>{''.join(charts)}
<h2>Reference sets</h2>{''.join(img(c.name) for c in comparison.references if c.name in grids)}
</body></html>"""


def write_report(comparison: Comparison, out: str | Path) -> Path:
    """Write the report folder; returns it."""
    out = Path(out)
    for rel, content in report_files(comparison).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return out


def report_zip(comparison: Comparison) -> bytes:
    """The report as one .zip (the page's one-click download)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, content in report_files(comparison).items():
            zf.writestr(f"genlib-report/{rel}", content)
    return buf.getvalue()
