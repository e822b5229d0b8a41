"""Pure figure functions: a kernel result in, a plotly figure out, no widget state.

They are what the views draw, and they work on their own for static export:

>>> probe_curve_figure(curve, layer=12).write_html("curve.html")   # doctest: +SKIP

One color meaning across every view lives here: :data:`POSITIVE` (blue) is the positive side
(a positive projection, the "positive"/"true" class, a probability that rose), :data:`NEGATIVE`
(vermillion) the other; :data:`DIVERGING` runs between them through white. Both come from the
Okabe-Ito palette, which stays distinguishable with red-green colour blindness. Numbers shown to
people go through :func:`fmt` (and hovers through :data:`HOVER`): 3 significant digits.
"""

from __future__ import annotations

import html
import textwrap

import numpy as np
import plotly.graph_objects as go

from reprlab import CircularAnalysis, ProbeCurve
from reprlab.numbers import fmt  # the one formatter, re-exported for the views

# Okabe-Ito: a categorical palette that colour-blind readers can tell apart.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000",
           "#F0E442")
POSITIVE, NEGATIVE = "#0072B2", "#D55E00"   # positive / true / rose  vs  negative / false / fell
NEUTRAL = "#f7f7f7"
DIVERGING = [[0.0, NEGATIVE], [0.5, NEUTRAL], [1.0, POSITIVE]]
SCORE, CONTROL, MARKER = "#0072B2", "#9a9a9a", "#E69F00"
HOVER = ".3g"   # d3 format of every number in a hover: 3 significant digits
CHANGED_STYLE = ("background:#fde7c2;text-decoration:underline 2px #D55E00;"
                 "text-underline-offset:3px;font-weight:600")  # marked by more than colour
POSITIVE_NAMES = ("positive", "true", "yes", "1", "pos")
NEGATIVE_NAMES = ("negative", "false", "no", "0", "neg")


def class_colors(classes) -> dict:
    """Label -> colour, the same in every view: "positive"/"true" blue, "negative"/"false"
    vermillion; two other labels get blue for the second (the probe's > 0 side) and vermillion
    for the first; more labels get the categorical palette."""
    classes = list(dict.fromkeys(classes))
    names = [str(c).strip().lower() for c in classes]
    if len(classes) == 2:
        if names[0] in POSITIVE_NAMES or names[1] in NEGATIVE_NAMES:
            return {classes[0]: POSITIVE, classes[1]: NEGATIVE}
        return {classes[0]: NEGATIVE, classes[1]: POSITIVE}
    return {c: PALETTE[k % len(PALETTE)] for k, c in enumerate(classes)}


def diverging_color(t: float) -> tuple[int, int, int]:
    """RGB of ``t`` in [-1, 1] on :data:`DIVERGING` (NEGATIVE at -1, white at 0, POSITIVE)."""
    t = float(np.clip(t, -1.0, 1.0))
    end = POSITIVE if t > 0 else NEGATIVE
    rgb = [int(end[i:i + 2], 16) for i in (1, 3, 5)]
    base = [int(NEUTRAL[i:i + 2], 16) for i in (1, 3, 5)]
    a = abs(t)
    return tuple(round(b + (e - b) * a) for b, e in zip(base, rgb))


def text_color(rgb) -> str:
    """Black or white, whichever reads better on the background ``rgb`` (WCAG luminance)."""
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#000" if luminance > 0.179 else "#fff"


def with_caption(fig: go.Figure, text: str, width: int = 72) -> go.Figure:
    """Put a one-line "how to read it" caption under the title (kept in every export)."""
    lines = textwrap.wrap(text, width) or [""]
    fig.update_layout(title_subtitle_text="<br>".join(lines),
                      title_subtitle_font={"size": 11, "color": "#555"})
    top = fig.layout.margin.t or 45
    fig.update_layout(margin_t=top + 14 * len(lines))
    return fig


def layer_marker(layer: int | None) -> list[dict]:
    """Layout shapes for the vertical line that marks the chosen layer (none for ``None``)."""
    if layer is None:
        return []
    return [{"type": "line", "x0": layer, "x1": layer, "yref": "paper", "y0": 0, "y1": 1,
             "line": {"color": MARKER, "width": 2}}]


def _band(x, mid, spread, color: str, name: str) -> go.Scatter:
    x = list(x)
    upper, lower = (mid + spread).tolist(), (mid - spread).tolist()
    return go.Scatter(
        x=x + x[::-1], y=upper + lower[::-1], fill="toself", fillcolor=color, opacity=0.18,
        line={"width": 0}, hoverinfo="skip", showlegend=False, name=name,
    )


def _layout(fig: go.Figure, title: str, height: int, **more) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=height, template="plotly_white",
        margin={"l": 55, "r": 10, "t": 45, "b": 45}, legend={"orientation": "h", "y": -0.22},
        hoverlabel={"font_size": 12}, **more,
    )
    return fig


def probe_curve_figure(curve: ProbeCurve, layer: int | None = None,
                       at: str | None = None) -> go.Figure:
    """Score per layer with its fold spread, the shuffled-label control and chance."""
    x = list(curve.layers)
    metric = "accuracy" if curve.metric == "accuracy" else "R²"
    traces = [
        _band(x, curve.scores, curve.spread, SCORE, "fold spread"),
        go.Scatter(
            x=x, y=curve.scores.tolist(), mode="lines+markers", name=f"probe {metric}",
            line={"color": SCORE, "width": 2.5}, marker={"size": 6},
            customdata=np.stack([curve.spread, curve.selectivity if curve.control is not None
                                 else curve.scores * 0], 1),
            hovertemplate=(f"layer %{{x}}<br>{metric} %{{y:{HOVER}}} ± %{{customdata[0]:{HOVER}}}"
                           f"<br>selectivity %{{customdata[1]:{HOVER}}}<extra></extra>"),
        ),
    ]
    if curve.null_max is not None:
        sig = curve.significant()
        p = curve.p_values
        traces.append(go.Scatter(
            x=[x[i] for i in np.flatnonzero(sig)], y=curve.scores[sig].tolist(), mode="markers",
            name="above chance (p < 0.05, corrected for all layers)",
            marker={"color": SCORE, "size": 11, "symbol": "circle-open", "line": {"width": 2}},
            customdata=p[sig], hovertemplate="layer %{x}: corrected p %{customdata:.3g}"
                                              "<extra></extra>",
        ))
        need = curve.thresholds()
        shown = np.isfinite(need)
        traces.append(go.Scatter(
            x=[x[i] for i in np.flatnonzero(shown)], y=need[shown].tolist(), mode="lines",
            name="score needed (p < 0.05, corrected)",
            line={"color": CONTROL, "dash": "dash", "width": 1},
            hovertemplate=(f"layer %{{x}}: a score above %{{y:{HOVER}}} is above chance at "
                           f"p < 0.05 after correcting for all layers ({curve.n_permutations} "
                           "shuffles; never at or below chance)<extra></extra>"),
        ))
    if curve.control is not None:
        ctrl_spread = curve.control_spread
        traces += [
            _band(x, curve.control, ctrl_spread, CONTROL, "control spread"),
            go.Scatter(
                x=x, y=curve.control.tolist(), mode="lines", name="control (shuffled labels)",
                line={"color": CONTROL, "dash": "dot"}, customdata=ctrl_spread,
                hovertemplate=(f"layer %{{x}}<br>control {metric} %{{y:{HOVER}}} ± "
                               f"%{{customdata:{HOVER}}}<extra></extra>"),
            ),
        ]
    traces.append(go.Scatter(
        x=[x[0], x[-1]], y=[curve.chance, curve.chance], mode="lines", name="chance",
        line={"color": "#444", "dash": "dash", "width": 1}, hoverinfo="skip",
    ))
    where = f", read at '{at}'" if at else ""
    fig = _layout(go.Figure(traces),
                  f"Linear probe {metric} per layer ({len(curve.labels)} examples, "
                  f"{curve.fold_scores.shape[1]}-fold CV{where})", 380,
                  xaxis_title="hidden state (0 = embeddings)", yaxis_title=f"held-out {metric}",
                  shapes=layer_marker(layer))
    return with_caption(fig, "Blue: how well a linear read-out predicts the label from each "
                        "layer; grey: the same probe on shuffled labels. Only the gap above the "
                        "grey counts; circled layers beat the shuffles (corrected for picking the "
                        "best layer). Click a point to pick a layer.", 78)


def probe_layer_figure(curve: ProbeCurve, layer: int) -> go.Figure:
    """Held-out probe outputs of every example at ``layer``, by class (or vs. the target)."""
    labels = np.asarray(curve.labels, dtype=object)
    i = curve.index(layer)
    score = curve.scores[i]
    colors = class_colors(curve.classes) if curve.task != "regression" else {}
    if curve.task == "regression":
        pred = curve.heldout_scores(layer).numpy()
        target = labels.astype(float)
        lo, hi = float(min(target.min(), pred.min())), float(max(target.max(), pred.max()))
        fig = go.Figure([
            go.Scatter(x=target, y=pred, mode="markers", name="examples",
                       text=list(curve.texts), marker={"color": SCORE, "opacity": 0.6},
                       hovertemplate=f"%{{text}}<br>target %{{x:{HOVER}}}, predicted "
                                     f"%{{y:{HOVER}}}<extra></extra>"),
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect",
                       line={"color": "#444", "dash": "dash", "width": 1}),
        ])
        fig.update_layout(xaxis_title="target", yaxis_title="held-out prediction")
        caption = "Each dot is one example; on the dashed line the probe is exactly right."
    elif len(curve.classes) == 2:
        logit = curve.heldout_scores(layer).numpy()
        fig = go.Figure([
            go.Histogram(x=logit[labels == c], name=str(c), opacity=0.6, nbinsx=30,
                         marker={"color": colors[c]},
                         hovertemplate=f"{c}: %{{y}} examples<extra></extra>")
            for c in curve.classes
        ])
        fig.update_layout(barmode="overlay", xaxis_title=f"held-out probe logit "
                          f"(> 0 means '{curve.classes[1]}')", yaxis_title="examples")
        caption = ("Probe outputs on examples it never saw, one colour per true label: the less "
                   "the two colours overlap, the better the layer separates them.")
    else:
        probs = curve.heldout_probabilities(layer).numpy()
        own = probs[np.arange(len(labels)), [curve.classes.index(v) for v in labels]]
        fig = go.Figure([
            go.Box(x=own[labels == c], name=str(c), boxpoints="all", jitter=0.5,
                   marker={"color": colors[c]},
                   text=[t for t, lab in zip(curve.texts, labels) if lab == c],
                   hovertemplate="%{text}<br>p(own class) %{x:.2f}<extra></extra>")
            for c in curve.classes
        ])
        fig.update_layout(xaxis_title="held-out probability of the true class",
                          yaxis_title="true class", xaxis_range=[0, 1], showlegend=False)
        caption = "Each dot is one example: near 1 means the probe gave its true class."
    _layout(fig, f"Layer {layer}: {curve.metric} {fmt(score)}", 380)
    return with_caption(fig, caption, 58)


def readable_token(token: str) -> str:
    """How a token is shown: visible spaces kept, empty tokens as ␣, newlines as ⏎."""
    if not token:
        return "\u2423"
    return token.replace("\n", "\u23ce").replace("\t", "\u21e5")


def token_html(projection) -> str:
    """Tokens of one text colored by their projection (:data:`DIVERGING`), wrapping like text,
    with a colour legend; the color scale leaves out the first token (an attention sink)."""
    values = np.asarray(projection.values, dtype=float)
    # The first token is an attention sink with outsized activations: keep it out of the color
    # scale (its value still shows on hover), and clip anything beyond the scale.
    scaled = values[1:] if len(values) > 2 else values
    peak = float(np.abs(scaled).max()) or 1.0
    spans = []
    for token, value in zip(projection.tokens, values):
        rgb = diverging_color(value / peak)
        shown = html.escape(readable_token(token))
        spans.append(
            f"<span class='reprlab-token' title='{html.escape(repr(token))}: {fmt(value)}' "
            f"style='background:rgb{rgb};color:{text_color(rgb)};padding:2px 1px;"
            f"border-radius:3px;font-family:monospace;white-space:pre-wrap'>{shown}</span>"
        )
    lo, hi = diverging_color(-1), diverging_color(1)
    legend = (
        "<div style='color:#555;font-size:90%;margin-top:4px'>"
        f"<span style='background:rgb{lo};color:{text_color(lo)};padding:0 4px'>"
        f"−{fmt(peak)}</span>"
        f"<span style='background:linear-gradient(90deg,rgb{lo},{NEUTRAL},rgb{hi});"
        "display:inline-block;width:90px;height:0.9em;vertical-align:middle'></span>"
        f"<span style='background:rgb{hi};color:{text_color(hi)};padding:0 4px'>"
        f"+{fmt(peak)}</span> "
        f"projection on '{html.escape(projection.direction)}' at layer {projection.layer} "
        f"({projection.inner} inner product, "
        f"{html.escape(getattr(projection, 'origin', '') or 'uncentred')}): blue tokens point "
        "along the direction, vermillion against it. The first token is left out of the colour "
        "scale (attention sink); hover a token for its value.</div>"
    )
    return ("<div class='reprlab-tokens' style='line-height:2;white-space:normal;"
            "overflow-wrap:anywhere;max-width:100%'>" + "".join(spans) + "</div>" + legend)


def projection_histogram(projections) -> go.Figure:
    """Distribution of projections for each label of a labelled set."""
    groups = projections.by_label()
    colors = class_colors(list(groups))
    fig = go.Figure([
        go.Histogram(x=values, name=str(label), opacity=0.6, nbinsx=30,
                     marker={"color": colors[label]},
                     hovertemplate=f"{label}: %{{y}} texts<extra></extra>")
        for label, values in groups.items()
    ])
    _layout(fig, f"Texts projected on '{projections.direction}' (layer {projections.layer}, "
            f"{projections.inner})", 360, barmode="overlay",
            xaxis_title=f"projection ({getattr(projections, 'origin', '') or 'uncentred'})",
            yaxis_title="texts")
    return with_caption(fig, "One colour per label: if the direction captures the concept, the "
                        "two colours sit apart along the x-axis.", 62)


def similarity_heatmap(matrix) -> go.Figure:
    """Cosine similarities between directions under one inner product."""
    names = list(matrix.names)
    fig = go.Figure(go.Heatmap(
        z=matrix.values, x=names, y=names, zmin=-1, zmax=1, colorscale=DIVERGING,
        text=[[fmt(v, 2) for v in row] for row in np.asarray(matrix.values)],
        texttemplate="%{text}", colorbar={"title": {"text": "cosine"}, "thickness": 12},
        hovertemplate=f"%{{y}} · %{{x}}: %{{z:{HOVER}}}<extra></extra>",
    ))
    spread = matrix.mean_abs_off_diagonal()
    summary = "one direction: build another to compare" if len(names) < 2 else \
        f"mean |off-diagonal| {fmt(spread, 2)}"
    title = f"Cosine, {matrix.inner} inner product ({summary})"
    null = getattr(matrix, "null_mean_abs", None)
    if null is not None:
        title += (f"<br><sup>{matrix.null_what}: mean |cos| {fmt(null, 2)}, 95% below "
                  f"{fmt(matrix.null_high, 2)}</sup>")
    _layout(fig, title, 360, yaxis={"autorange": "reversed", "title": {"text": "direction"}},
            xaxis_title="direction")
    fig.update_layout(margin={"l": 100, "b": 80, "t": 45 if null is None else 62})
    return with_caption(fig, "Blue: directions point the same way (+1); vermillion: opposite "
                        "(-1); white: unrelated (0). Compare the cells with the null.", 62)


def cyclic_colors(k: int) -> list[str]:
    """One hue per item around the color wheel, so neighbours in the cycle look alike."""
    return [f"hsl({round(360 * i / k)}, 70%, 45%)" for i in range(k)]


MAP_METHOD_NAMES = {"pca": "PCA", "umap": "UMAP", "circle_probe": "circle probe (held out)"}


def circular_scatter(analysis: CircularAnalysis, layer: int) -> go.Figure:
    """Examples at ``layer`` in 2-D, colored by item; item means joined in cyclic order."""
    xy = analysis.coords[layer]
    means = analysis.item_means(layer)
    colors = cyclic_colors(len(analysis.items))
    texts = np.asarray(analysis.texts)
    traces = [
        go.Scatter(
            x=xy[analysis.item_index == k, 0], y=xy[analysis.item_index == k, 1], mode="markers",
            name=item, marker={"color": colors[k], "size": 7, "opacity": 0.55},
            text=texts[analysis.item_index == k], hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
        for k, item in enumerate(analysis.items)
    ]
    loop = np.vstack([means, means[:1]])
    traces.append(go.Scatter(x=loop[:, 0], y=loop[:, 1], mode="lines", name="cyclic order",
                             line={"color": "#333", "width": 1.5}, hoverinfo="skip",
                             showlegend=False))
    traces.append(go.Scatter(
        x=means[:, 0], y=means[:, 1], mode="markers+text", text=list(analysis.items),
        textposition="top center", name="item means", showlegend=False,
        marker={"color": colors, "size": 13, "line": {"color": "#222", "width": 1}},
        hovertemplate="%{text} (mean)<extra></extra>",
    ))
    fig = _layout(go.Figure(traces), f"{analysis.cycle} at layer {layer}: "
                  f"{MAP_METHOD_NAMES[analysis.map_method]}, {analysis.inner}", 430,
                  xaxis={"zeroline": False, "title": {"text": "component 1"}},
                  yaxis={"zeroline": False, "scaleanchor": "x", "title": {"text": "component 2"}})
    fig.update_layout(margin={"l": 50, "b": 40})
    return with_caption(fig, "Small dots: one example each, coloured by item (neighbours in the "
                        "cycle get neighbouring hues); big dots: item means, joined in cyclic "
                        "order. A loop without crossings suggests a circle.", 62)


def circularity_curve(analysis: CircularAnalysis, layer: int | None = None) -> go.Figure:
    """Per layer: rank correlation of item-mean distances with cyclic and linear distance,
    and the permutation null band for the cyclic one."""
    s = analysis.stats
    x = list(analysis.layers)
    traces = [
        go.Scatter(x=x + x[::-1], y=s.null_high.tolist() + s.null_low.tolist()[::-1],
                   fill="toself", fillcolor=CONTROL, opacity=0.25, line={"width": 0},
                   name="null (95% of shuffled orders)", hoverinfo="skip"),
        go.Scatter(x=x, y=s.rho_cyclic.tolist(), mode="lines+markers", name="ρ cyclic",
                   line={"color": SCORE, "width": 2.5},
                   customdata=np.stack([s.p_beyond_linear, s.probe_score, s.probe_control,
                                        s.p_value], 1),
                   hovertemplate=("layer %{x}: ρ cyclic %{y:.2f} (alone: p = %{customdata[3]:.3g})"
                                  "<br>cyclic beyond linear: p = %{customdata[0]:.3g}, corrected "
                                  "for all layers<br>circle probe %{customdata[1]:.2f} vs "
                                  "shuffled order %{customdata[2]:.2f}<extra></extra>")),
        go.Scatter(x=x, y=s.rho_linear.tolist(), mode="lines", name="ρ linear order",
                   line={"color": NEGATIVE, "dash": "dot"},
                   hovertemplate="layer %{x}: ρ linear %{y:.2f}<extra></extra>"),
        go.Scatter(x=[x[i] for i in np.flatnonzero(s.circular)],
                   y=s.rho_cyclic[s.circular].tolist(), mode="markers",
                   name="circular: cyclic beyond linear (p < 0.05, corrected)",
                   marker={"color": SCORE, "size": 12, "symbol": "circle-open",
                           "line": {"width": 2}}, hoverinfo="skip"),
    ]
    fig = _layout(go.Figure(traces), "Do item-mean distances follow the cycle?", 430,
                  xaxis_title="hidden state (0 = embeddings)",
                  yaxis_title="Spearman ρ with distance", yaxis_range=[-1, 1],
                  shapes=layer_marker(layer))
    fig.update_layout(margin={"l": 50, "b": 40})
    return with_caption(fig, "Blue above the grey band (shuffled orders) and above the dotted "
                        "line (plain linear order) suggests a circle; circled layers pass the "
                        "test, corrected for looking at every layer.", 62)
