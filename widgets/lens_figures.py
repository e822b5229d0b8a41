"""Figures and tables of the lens view: pure functions from lens results to plotly specs and HTML.

A grid column is one token of the text (the lens predicts the token after it): a
``(LensResult, row)`` pair, so the prompt's columns and each generated token's column (a
result of its own) sit side by side.

>>> lens_grid([(r, i) for i in range(r.n_rows)], "probability")       # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from reprlab.few_shot import LabelAccuracy
from reprlab.lens_readout import LensReadOut
from reprlab.lenses import LensResult
from reprlab.numbers import fmt, fmt_p, fmt_signed

from .figure_text import fit, text_width, with_caption
from .figures import CONTROL, HOVER, MARKER, NEGATIVE, NEUTRAL, POSITIVE, _band, _layout
from .figures import readable_token as _readable

Column = tuple[LensResult, int]

#: What a cell can be shaded by: label -> (what the colour bar says, colour scale).
SHADES = {  # label -> (what the title says, the colour bar's title, colour scale)
    "probability": ("top-1 probability", "p", [[0.0, NEUTRAL], [1.0, POSITIVE]]),
    "KL to final": ("KL to final (nats)", "nats", [[0.0, NEUTRAL], [1.0, NEGATIVE]]),
    "entropy": ("entropy (nats)", "nats", [[0.0, NEUTRAL], [1.0, NEGATIVE]]),
    "target": ("target probability", "p", [[0.0, NEUTRAL], [1.0, POSITIVE]]),
}
PLOT_WIDTH = 380   # px of grid the narrowest Explorer (JupyterLab, file browser open) has
CELL_SIZE = 10     # font size of the cell labels
ROW_PX = 17        # px per layer row: room for one line of cell text
TICK_PX = 36       # px a token's tick label needs at least
COMMIT_COLOR = "#000000"


def readable_token(token: str) -> str:
    """A token as a cell shows it: spaces of a whitespace-only token as ␣ (else invisible)."""
    shown = _readable(token)
    return shown.replace(" ", "\u2423") if shown.isspace() else shown


def shade_values(result: LensResult, shade: str) -> np.ndarray:
    """``[layers, rows]`` values a shade shows (NaN for a target shade without targets)."""
    if shade == "probability":
        return result.top_probs[:, :, 0].numpy()
    if shade == "KL to final":
        return result.kl_to_final.numpy()
    if shade == "entropy":
        return result.entropy.numpy()
    if shade == "target":
        if result.target_prob is None:
            return np.full(tuple(result.entropy.shape), np.nan)
        return result.target_prob.numpy()
    raise ValueError(f"shade {shade!r}: choose one of {', '.join(SHADES)}")


def column_token(column: Column) -> str:
    result, row = column
    return readable_token(result.row_token(row))


def lens_grid(columns: Sequence[Column], shade: str = "probability",
              selected: tuple[int, int] | None = None, generated_from: int | None = None
              ) -> go.Figure:
    """Layers x tokens, each cell labelled with the lens's top token and shaded by ``shade``;
    a black bar under the layer from which each column's top token is the model's own for good
    ("settles"); ``selected`` ``(column, layer)`` outlined; columns from ``generated_from`` on
    were written by the model."""
    first = columns[0][0]
    layers = list(first.layers)
    n = len(columns)
    z = np.stack([shade_values(r, shade)[:, row] for r, row in columns], axis=1)
    top = [[readable_token(r.top_tokens[li][row][0]) for r, row in columns]
           for li in range(len(layers))]
    probs = np.stack([r.top_probs[:, row, 0].numpy() for r, row in columns], axis=1)
    kl = np.stack([r.kl_to_final[:, row].numpy() for r, row in columns], axis=1)
    ent = np.stack([r.entropy[:, row].numpy() for r, row in columns], axis=1)
    cell = PLOT_WIDTH / n
    labels = [[_cell_label(t, cell) for t in line] for line in top]
    bar, unit, scale = SHADES[shade]
    finite = z[np.isfinite(z)]
    zmax = 1.0 if shade in ("probability", "target") else \
        float(max(finite.max() if finite.size else 1.0, 1e-6))
    custom = np.stack([np.array(top, dtype=object), probs, kl, ent], axis=-1)
    tokens = [column_token(c) for c in columns]
    hover = ("layer %{y}, after %{x}<br>top token %{customdata[0]} (p %{customdata[1]:"
             f"{HOVER}}})<br>KL to final %{{customdata[2]:{HOVER}}} nats · entropy "
             f"%{{customdata[3]:{HOVER}}}<extra></extra>")
    traces = [go.Heatmap(
        z=z, x=list(range(n)), y=layers, zmin=0, zmax=zmax, colorscale=scale,
        text=labels, texttemplate="%{text}", textfont={"size": CELL_SIZE},
        customdata=custom, hovertemplate=hover, xgap=1, ygap=1,
        colorbar={"title": {"text": unit, "side": "top"}, "thickness": 12, "len": 0.8},
    )]
    commits = _commits(columns)
    traces.append(go.Scatter(
        x=[None], y=[None], mode="lines", name="settles: top token = final from here up",
        line={"color": COMMIT_COLOR, "width": 3}, hoverinfo="skip"))
    shapes = [{"type": "line", "x0": c - 0.45, "x1": c + 0.45, "y0": layer - 0.5,
               "y1": layer - 0.5, "line": {"color": COMMIT_COLOR, "width": 3}}
              for c, layer in enumerate(commits) if layer is not None]
    shapes += selection_shape(selected)
    if generated_from is not None and 0 < generated_from < n:
        shapes.append({"type": "line", "x0": generated_from - 0.5, "x1": generated_from - 0.5,
                       "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": MARKER, "width": 2, "dash": "dot"}})
    step = max(1, math.ceil(n * TICK_PX / PLOT_WIDTH))
    ticks = list(range(0, n, step))
    tick_px = min(cell * step, 90) - 4
    detail = f"{first.lens} lens · shade: {bar}" + (
        f" · target {first.targets[0]!r}" if shade == "target" and first.targets else "")
    fig = _layout(go.Figure(traces), "What each layer would say next", 110 + ROW_PX * len(layers),
                  detail=detail, shapes=shapes,
                  xaxis={"title": {"text": "token (the lens predicts the next one)"},
                         "tickvals": ticks,
                         "ticktext": [fit(tokens[i], 10, tick_px) for i in ticks],
                         "tickfont": {"size": 10}, "range": [-0.5, n - 0.5]},
                  yaxis={"title": {"text": "hidden state (0 = embeddings)"}, "dtick": 5,
                         "range": [layers[0] - 0.5, layers[-1] + 0.5]})
    fig.update_layout(margin={"l": 78, "r": 10}, showlegend=True)
    wrote = " Right of the dotted line: the model's own words." if generated_from else ""
    return with_caption(fig, f"Cell: that layer's top next token, shaded by {bar}. Black bar: "
                        "from there up the top token is the model's own." + wrote +
                        " Click a cell for its top 10.")


def selection_shape(selected: tuple[int, int] | None) -> list[dict]:
    """The outline of the selected ``(column, layer)`` cell (none when nothing is selected)."""
    if selected is None:
        return []
    c, layer = selected
    return [{"type": "rect", "x0": c - 0.5, "x1": c + 0.5, "y0": layer - 0.5, "y1": layer + 0.5,
             "line": {"color": MARKER, "width": 3}, "name": "selected"}]


def _commits(columns: Sequence[Column]) -> list[int | None]:
    return [r.commits_at()[row] for r, row in columns]


def _cell_label(token: str, cell_px: float) -> str:
    """The token cut to the cell, or nothing when not even two characters would fit."""
    if text_width("ab…", CELL_SIZE) > cell_px - 4:
        return ""
    return fit(token, CELL_SIZE, cell_px - 4)


def top_table(column: Column, layer: int) -> str:
    """HTML: the top-k of one cell beside the model's own top token and the target's rank."""
    result, row = column
    li = result.layers.index(layer)
    token = html.escape(readable_token(result.row_token(row)))
    lines = "".join(
        f"<tr><td>{rank}</td><td><code>{html.escape(readable_token(name))}</code></td>"
        f"<td style='text-align:right'>{fmt(float(p))}</td></tr>"
        for rank, (name, p) in enumerate(zip(result.top_tokens[li][row],
                                             result.top_probs[li, row].tolist()), 1))
    final = int(result.final_top_ids[row])
    own = [i for i, j in enumerate(result.top_ids[li, row].tolist()) if j == final]
    last = result.layers.index(result.layers[-1])
    notes = [f"KL to the final distribution {fmt(float(result.kl_to_final[li, row]))} nats, "
             f"entropy {fmt(float(result.entropy[li, row]))} nats."]
    notes.append("The model's own next token is " + (
        f"rank {own[0] + 1} here." if own else "not in this top list.")
        if layer != result.layers[-1] else "This is the model's own distribution.")
    if result.target_prob is not None:
        notes.append(f"Target {html.escape(repr(result.targets[int(result.text_index[row])]))}: "
                     f"p {fmt(float(result.target_prob[li, row]))}, rank "
                     f"{int(result.target_rank[li, row])} (at the last layer: rank "
                     f"{int(result.target_rank[last, row])}).")
    return (f"<div class='reprlab-lens-cell'><b>Layer {layer}, after <code>{token}</code></b> "
            f"({html.escape(result.lens)} lens): the {len(result.top_tokens[li][row])} most "
            "probable next tokens<table style='border-collapse:collapse'>"
            "<tr><th>#</th><th>token</th><th>probability</th></tr>"
            f"{lines}</table><div style='color:#444'>{html.escape(' '.join(notes))}</div></div>")


def readout_table(r: LensReadOut, shown: int = 8) -> str:
    """HTML: a direction's promoted and suppressed tokens beside the random-direction null."""
    def cells(listed):
        return [f"<td><code>{html.escape(readable_token(t))}</code></td>"
                f"<td style='text-align:right'>{fmt_signed(c)}</td>" for t, c in listed[:shown]]

    up, down = cells(r.promoted), cells(r.suppressed)
    body = "".join(f"<tr>{a}{b}</tr>" for a, b in zip(up, down, strict=True))
    top = r.promoted[0][1]
    verdict = "beyond" if top > r.null_high else "within"
    return (f"<div><b>{html.escape(r.direction)} in words</b> ({html.escape(r.lens)} lens at "
            f"layer {r.layer}, alpha {fmt(r.alpha)}): change in log-probability, nats"
            "<table style='border-collapse:collapse'><tr><th>promotes</th><th></th>"
            f"<th>suppresses</th><th></th></tr>{body}</table>"
            f"<div style='color:#444'>Its top change {fmt_signed(top)} is {verdict} what "
            f"random directions do ({len(r.random_top)} at the same strength: 95% below "
            f"{fmt_signed(r.null_high)}, {fmt_p(r.p_value)}).</div></div>")


CONDITION_COLORS = {"correct": POSITIVE, "flipped": NEGATIVE, "random": CONTROL}


def label_accuracy_figure(accuracies: Sequence[LabelAccuracy]) -> go.Figure:
    """Per-layer label accuracy of one task under each demonstration condition, with bootstrap
    95% bands and chance: blue correct, vermillion flipped, grey the random-label control."""
    traces = []
    for acc in accuracies:
        x = list(acc.layers)
        color = CONDITION_COLORS.get(acc.condition, MARKER)
        mid = acc.accuracy.numpy()
        traces.append(_band(x, (acc.high.numpy() + acc.low.numpy()) / 2,
                            (acc.high.numpy() - acc.low.numpy()) / 2, color, acc.condition))
        traces.append(go.Scatter(
            x=x, y=mid.tolist(), mode="lines+markers", name=f"{acc.condition} labels",
            line={"color": color, "width": 2.5 if acc.condition != "random" else 1.5,
                  "dash": "dot" if acc.condition == "random" else "solid"},
            marker={"size": 5},
            hovertemplate=f"layer %{{x}}: accuracy %{{y:{HOVER}}}<extra>{acc.condition}</extra>"))
    first = accuracies[0]
    traces.append(go.Scatter(x=[first.layers[0], first.layers[-1]], y=[0.5, 0.5], mode="lines",
                             name="chance", line={"color": "#222", "dash": "dash", "width": 1},
                             hoverinfo="skip"))
    fig = _layout(go.Figure(traces), f"Few-shot {first.task}: the label read per layer", 430,
                  detail=f"{first.lens} lens · {first.correct.shape[1]} held-apart queries, 95% "
                         "bootstrap bands",
                  xaxis_title="hidden state (0 = embeddings)", yaxis_title="label accuracy",
                  yaxis={"range": [0, 1]})
    return with_caption(fig, "Which label token the lens ranks higher at the query's last "
                        "token, per layer. Blue: demonstrations labelled correctly; "
                        "vermillion: every label flipped; grey dotted: random labels (the "
                        "control).")


__all__ = ["CONDITION_COLORS", "SHADES", "label_accuracy_figure", "lens_grid", "readout_table",
           "selection_shape", "shade_values", "top_table"]
