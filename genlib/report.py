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
import math
import re
import zipfile
from pathlib import Path
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from genlib.comparison import Comparison
from genlib.images import from_uint8, to_grid, to_png
from genlib.likelihood import BENCHMARKS, PUBLISHED, PUBLISHED_NOTE
from genlib.scoring import LIKELIHOOD_KEYS, METRIC_BY_KEY, METRICS, Scorecard, is_number, scoreboard_rows

GRID_SCALE = 2


# -- tables ------------------------------------------------------------------------------------------------
def scoreboard_frame(comparison: Comparison) -> pd.DataFrame:
    """The scoreboard: one row per model then per reference set; numeric columns (NaN when n/a)."""
    frame = pd.DataFrame(scoreboard_rows(comparison.cards))
    for spec in METRICS:
        frame[spec.key] = pd.to_numeric(frame[spec.key], errors="coerce")
    return frame


SCOREBOARD_CSS = """<style>
table.genlib-scoreboard{border-collapse:collapse;width:100%;font-size:0.85rem;font-variant-numeric:tabular-nums}
table.genlib-scoreboard th{text-align:right;vertical-align:bottom;font-weight:600;padding:4px 6px;
  border-bottom:2px solid #bbb;cursor:help}
table.genlib-scoreboard td{text-align:right;padding:3px 6px;border-bottom:1px solid #e4e4e4;white-space:nowrap}
table.genlib-scoreboard th.name,table.genlib-scoreboard td.name{text-align:left}
table.genlib-scoreboard td.na{color:#999;cursor:help}
table.genlib-scoreboard td.best{font-weight:700}
table.genlib-scoreboard tr.reference td{font-style:italic;color:#555;background:#f7f7f9}
table.genlib-scoreboard tr.pending td{color:#888}
</style>"""


def _sort_value(card: Scorecard, key: str) -> float:
    """A model's value for sorting best first; models without it go last."""
    value, spec = card.metrics.get(key), METRIC_BY_KEY[key]
    if not is_number(value):
        return math.inf
    return -value if spec.better == "higher" else value


def scoreboard_html(comparison: Comparison, columns: Sequence[str] | None = None,
                    sort_by: str = "frechet_distance", pending: dict[str, str] | None = None) -> str:
    """The scoreboard as one HTML table that fits its width: the models sorted best first by
    ``sort_by``, then the reference sets in italics. A metric a model does not have reads "n/a" with
    the reason as its tooltip; the best model value of each column is bold; every header says
    what is better (↓ ↑) and explains itself on hover. ``pending`` rows (name -> "scoring… 40%")
    stand for models still being scored."""
    specs = [METRIC_BY_KEY[key] for key in (columns or [m.key for m in METRICS])]
    models = sorted(comparison.models, key=lambda card: _sort_value(card, sort_by)) \
        if sort_by in METRIC_BY_KEY else list(comparison.models)
    best = {}
    for spec in specs:
        values = [c.metrics[spec.key] for c in models if is_number(c.metrics.get(spec.key))]
        if values and spec.better and len(models) > 1:
            best[spec.key] = min(values) if spec.better == "lower" else max(values)

    def cell(card: Scorecard, spec) -> str:
        value = card.metrics.get(spec.key)
        if not is_number(value):
            reason = card.missing.get(spec.key, "not measured")
            return f'<td class="na" title="{html.escape(reason)}">n/a</td>'
        text = spec.format.format(value)
        if spec.key in LIKELIHOOD_KEYS and card.metrics.get("likelihood") in ("bound", "estimate"):
            text += f" ({card.metrics['likelihood']})"
        strong = card.kind == "model" and best.get(spec.key) == value
        return f'<td class="{"best" if strong else ""}">{html.escape(text)}</td>'

    head = "".join(f'<th title="{html.escape(s.help)}">{html.escape(s.title)}</th>' for s in specs)
    rows = [f'<tr class="{card.kind}"><td class="name">{html.escape(card.name)}</td>'
            f'<td class="name">{html.escape(card.family)}</td>{"".join(cell(card, s) for s in specs)}</tr>'
            for card in models]
    rows += [f'<tr class="pending"><td class="name">{html.escape(name)}</td><td class="name"></td>'
             f'<td colspan="{len(specs)}" style="text-align:left">{html.escape(status)}</td></tr>'
             for name, status in (pending or {}).items()]
    rows += [f'<tr class="reference"><td class="name">{html.escape(card.name)}</td><td class="name">reference</td>'
             f'{"".join(cell(card, s) for s in specs)}</tr>' for card in comparison.references]
    return (f'{SCOREBOARD_CSS}<table class="genlib-scoreboard"><thead><tr><th class="name">model</th>'
            f'<th class="name">family</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def na_reasons(comparison: Comparison, columns: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Every "n/a" of the models in words: "metric: reason" -> the models it applies to."""
    keys = set(columns or METRIC_BY_KEY)
    reasons: dict[str, list[str]] = {}
    for card in comparison.models:
        for key, why in card.missing.items():
            if key in keys and key in METRIC_BY_KEY:
                reasons.setdefault(f"{METRIC_BY_KEY[key].title}: {why}", []).append(card.name)
    return reasons


def scorecard_png(card: Scorecard, seed: int, scale: int = GRID_SCALE) -> bytes:
    """A scorecard's sample grid as PNG, with the model id, family and seed in its metadata."""
    grid = to_grid(from_uint8(card.grid), nrow=card.grid_nrow)
    return to_png(grid, {"model": card.name, "family": card.family, "seed": str(seed), "source": "genlib compare"},
                  scale)


def safe_name(name: str) -> str:
    """A model id as a file name (hub ids contain '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


# -- figures ------------------------------------------------------------------------------------------------
FD_AXIS = "Fréchet distance ↓ (lower is better, log)"


def _log_range(values: list[float], pad: float = 0.15) -> list[float]:
    """A log axis range (in decades, as plotly wants it) that fits ``values`` with some room."""
    lo, hi = math.log10(min(values)), math.log10(max(values))
    room = max(pad * (hi - lo), 0.12)
    return [lo - room, hi + room]


def _scatter_against(comparison: Comparison, x_key: str, x_title: str, title: str) -> go.Figure:
    """Fréchet distance of each model against one cost; both axes fitted to the models. Reference
    sets are dotted horizontal lines where they fall inside that range, and named at the top or
    bottom edge where they fall outside it (uniform noise is far off any model's scale)."""
    fig = go.Figure()
    points = [(card.name, card.metrics.get(x_key), card.metrics.get("frechet_distance")) for card in comparison.models]
    points = [(name, x, y) for name, x, y in points if is_number(x) and is_number(y) and x > 0 and y > 0]
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=FD_AXIS, height=420, showlegend=False,
                      xaxis_type="log", yaxis_type="log", margin={"t": 90, "b": 60}, title_y=0.97)
    if not points:
        fig.add_annotation(text="no model has both numbers", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        return fig
    xs, ys = [x for _, x, _ in points], [y for _, _, y in points]
    x_range, y_range = _log_range(xs), _log_range(ys)
    fig.update_xaxes(range=x_range)
    fig.update_yaxes(range=y_range)
    edge = [10 ** x_range[0], 10 ** x_range[1]]
    above, below = [], []
    for card in comparison.references:
        y = card.metrics.get("frechet_distance")
        if not is_number(y) or y <= 0:
            continue
        if math.log10(y) > y_range[1]:
            above.append(f"{card.name} {y:,.0f}")
        elif math.log10(y) < y_range[0]:
            below.append(f"{card.name} {y:,.0f}")
        else:
            fig.add_trace(go.Scatter(x=edge, y=[y, y], mode="lines+text", text=["", card.name],
                                     textposition="top left", line={"dash": "dot", "color": "grey", "width": 1},
                                     textfont={"color": "grey"}, hoverinfo="skip"))
    fig.add_annotation(text="↙ better", showarrow=False, xref="paper", yref="paper", x=0.0, y=0.0, xanchor="left",
                       yanchor="bottom", font={"color": "seagreen", "size": 12})
    for names, arrow, y in ((above, "↑", 1.01), (below, "↓", 0.01)):  # above the plot; inside its bottom edge
        if names:
            fig.add_annotation(text=f"{arrow} off the scale: " + ", ".join(names), showarrow=False, xref="paper",
                               yref="paper", x=1.0, xanchor="right", y=y, yanchor="bottom",
                               font={"color": "grey", "size": 11})
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", text=[name for name, _, _ in points],
                             textposition="top center", marker={"size": 12},
                             hovertemplate="%{text}<br>%{x:.3g}<br>FD %{y:.1f}<extra></extra>"))
    return fig


def quality_vs_time(comparison: Comparison) -> go.Figure:
    """Fréchet distance against sampling time per image; dotted lines mark reference sets."""
    return _scatter_against(comparison, "sample_ms_per_image", "sampling time per image ↓ (ms, log)",
                            "Quality against sampling time")


def quality_vs_parameters(comparison: Comparison) -> go.Figure:
    """Fréchet distance against parameter count."""
    return _scatter_against(comparison, "num_parameters", "parameters ↓ (log)",
                            "Quality against size")


KIND_STYLE = {  # how each kind of likelihood value is drawn: (bar pattern, legend label)
    "exact": ("", "exact −log p(x)"),
    "bound": ("/", "upper bound (−ELBO, VLB)"),
    "estimate": (".", "estimate (AIS), ± its standard error"),
}


def likelihood_chart(comparison: Comparison) -> go.Figure:
    """The test negative log-likelihood of every model that has one, in two panels that never mix
    quantities (``genlib.likelihood``): 8-bit digits in bits/dim, binarized digits in nats per image.
    Bars are patterned by kind (exact, bound, estimate) with the standard error over the test digits
    as an error bar; grey diamonds mark the published full-MNIST figures."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=[f"{b.title}: {b.unit} ↓" for b in BENCHMARKS.values()])
    shown_kinds: set[str] = set()
    for col, benchmark in enumerate(BENCHMARKS.values(), start=1):
        cards = [c for c in comparison.models if is_number(c.metrics.get(benchmark.metric))]
        for kind, (pattern, label) in KIND_STYLE.items():
            of_kind = [c for c in cards if c.metrics.get("likelihood") == kind]
            if not of_kind:
                continue
            values = [c.metrics[benchmark.metric] for c in of_kind]
            errors = [c.metrics.get("likelihood_stderr", 0.0) for c in of_kind]
            notes = [c.metrics.get("likelihood_note", "") for c in of_kind]
            fig.add_trace(go.Bar(
                x=[c.name for c in of_kind], y=values, name=label, legendgroup=kind, showlegend=kind not in shown_kinds,
                marker_pattern_shape=pattern, marker_color="#4C78A8",
                error_y={"type": "data", "array": errors, "visible": True},
                text=[benchmark_format(benchmark.unit, v) for v in values], textposition="outside",
                customdata=[[e, n] for e, n in zip(errors, notes)],
                hovertemplate="%{x}: %{y:.4g} ± %{customdata[0]:.2g} " + benchmark.unit + " (" + kind +
                              ")<br>%{customdata[1]}<extra></extra>"), row=1, col=col)
            shown_kinds.add(kind)
        published = [p for p in PUBLISHED if p.benchmark == benchmark.key]
        fig.add_trace(go.Scatter(
            x=[f"{p.model} †" for p in published], y=[p.value for p in published], mode="markers+text",
            marker={"symbol": "diamond", "size": 12, "color": "#888"}, text=[f"{p.value:g}" for p in published],
            textposition="top center", name=f"† {PUBLISHED_NOTE}", legendgroup="published", showlegend=col == 1,
            customdata=[[p.kind, p.source] for p in published],
            hovertemplate="%{x}: %{y} " + benchmark.unit + " (%{customdata[0]}; " + PUBLISHED_NOTE +
                          ")<br>%{customdata[1]}<extra></extra>"), row=1, col=col)
        if not cards:
            fig.add_annotation(text="no model here has this likelihood", showarrow=False, font={"color": "#888"},
                               xref=f"x{col if col > 1 else ''} domain", yref=f"y{col if col > 1 else ''} domain",
                               x=0.5, y=0.5)
        fig.update_yaxes(title_text=f"{benchmark.unit} ↓", rangemode="tozero", row=1, col=col)
    fig.update_layout(title="Likelihood of the test digits (a GAN has none)", height=440, barmode="group",
                      legend={"orientation": "h", "y": -0.35}, margin={"b": 140})
    return fig


def benchmark_format(unit: str, value: float) -> str:
    """A likelihood value at the precision its unit needs: 3 decimals of bits/dim, 1 of nats."""
    return f"{value:.3f}" if unit == "bits/dim" else f"{value:.1f}"


def class_histograms(comparison: Comparison) -> go.Figure:
    """One small histogram per model of the classes the digit classifier reads in its samples; flat at
    10% is best, and a collapsed model shows spikes. Small multiples, since overlaid bars of three or
    more models cannot be read."""
    cards = [card for card in comparison.models if card.class_counts]
    columns = max(1, min(4, len(cards)))
    rows = max(1, math.ceil(len(cards) / columns))
    fig = make_subplots(rows=rows, cols=columns, shared_yaxes=True, subplot_titles=[c.name for c in cards],
                        horizontal_spacing=0.04, vertical_spacing=0.5 / rows)
    top = 0.1
    for i, card in enumerate(cards):
        total = max(1, sum(card.class_counts))
        shares = [count / total for count in card.class_counts]
        top = max(top, *shares)
        fig.add_trace(go.Bar(x=list(range(len(shares))), y=shares, name=card.name, marker_color="#4C78A8",
                             hovertemplate="digit %{x}: %{y:.1%}<extra>" + card.name + "</extra>"),
                      row=i // columns + 1, col=i % columns + 1)
        fig.add_hline(y=0.1, line_dash="dot", line_color="grey", row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(tickmode="linear", dtick=1, title_text="digit")
    fig.update_yaxes(range=[0, top * 1.1], tickformat=".0%")
    fig.update_yaxes(title_text="share of samples", col=1)
    fig.update_layout(title="Class histograms (best: flat at 10%)", showlegend=False,
                      height=140 + 240 * rows, margin={"t": 90})
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
    files["report.html"] = report_html(comparison, grids).encode()
    return files


def report_html(comparison: Comparison, grids: dict[str, bytes]) -> str:
    """One self-contained HTML page (images inline, plotly.js inline): it opens offline."""
    def img(name: str) -> str:
        data = base64.b64encode(grids[name]).decode()
        return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>")

    charts = [fig(comparison).to_html(full_html=False, include_plotlyjs=(i == 0))
              for i, fig in enumerate(FIGURES)]
    reasons = "".join(f"<li>{html.escape(why)} ({html.escape(', '.join(names))})</li>"
                      for why, names in na_reasons(comparison).items())
    table = scoreboard_html(comparison) + (f"<p>n/a means:</p><ul>{reasons}</ul>" if reasons else "")
    errors = "".join(f"<li>{html.escape(s)}: {html.escape(e)}</li>" for s, e in comparison.errors.items())
    title = f"genlib comparison (seed {comparison.seed})"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:.5em}}
img{{image-rendering:pixelated}}</style></head><body>
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
