"""Pure figure functions: a kernel result in, a plotly figure out, no widget state.

They are what the views draw, and they work on their own for static export:

>>> probe_curve_figure(curve, layer=12).write_html("curve.html")   # doctest: +SKIP

One color meaning across every view lives here: :data:`POSITIVE` (blue) is the positive side
(a positive projection, the "positive"/"true" class, a probability that rose), :data:`NEGATIVE`
(vermillion) the other; :data:`DIVERGING` runs between them through white. Both come from the
Okabe-Ito palette, which stays distinguishable with red-green colour blindness. Numbers shown to
people go through :func:`fmt` (and hovers through :data:`HOVER`): 3 significant digits. Text is
fitted to a ~320 px figure by :mod:`.figure_text`.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from reprlab import CircularAnalysis, ProbeCurve
from reprlab.numbers import fmt, fmt_score  # the one formatter (fmt re-exported for the views)

from .figure_text import (
    AXIS_TITLE_SIZE,
    FIT_WIDTH,
    LABEL_SIZE,
    LEGEND_SIZE,
    TITLE_SIZE,
    detail_lines,
    fit,
    map_frame,
    place_labels,
    short_labels,
    title_text,
    to_pixels,
    with_caption,
)

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
# Built once: naming the template by string makes plotly rebuild it for every figure (~10 ms).
TEMPLATE = pio.templates["plotly_white"]


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


def _layout(fig: go.Figure, title: str, height: int, detail: str = "", **more) -> go.Figure:
    fig.update_layout(
        title={"text": title_text(title, detail), "font": {"size": TITLE_SIZE}}, height=height,
        template=TEMPLATE, margin={"l": 55, "r": 10, "t": 45, "b": 45},
        hoverlabel={"font_size": 12}, **more,
    )
    # x tick labels a little lower: the first one ("-20") otherwise touches the y axis's "0"
    fig.update_xaxes(title_font_size=AXIS_TITLE_SIZE, ticklabelstandoff=4)
    fig.update_yaxes(title_font_size=AXIS_TITLE_SIZE)
    return fig


def probe_curve_figure(curve: ProbeCurve, layer: int | None = None,
                       at: str | None = None) -> go.Figure:
    """Score per layer with its fold spread, the shuffled-label control and chance: three lines
    a reader can tell apart (blue solid probe, grey control with x markers and its band, a
    black dashed chance line labelled at the right edge)."""
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
            name="above chance", showlegend=False,   # the caption says what circles mean
            marker={"color": SCORE, "size": 11, "symbol": "circle-open", "line": {"width": 2}},
            customdata=p[sig], hovertemplate="layer %{x}: above chance, corrected p "
                                              "%{customdata:.3g} (corrected for all layers)"
                                              "<extra></extra>",
        ))
        need = curve.thresholds()
        shown = np.isfinite(need)
        traces.append(go.Scatter(
            x=[x[i] for i in np.flatnonzero(shown)], y=need[shown].tolist(), mode="lines",
            name="needed, p < 0.05",
            line={"color": CONTROL, "dash": "longdash", "width": 1},
            hovertemplate=(f"layer %{{x}}: a score above %{{y:{HOVER}}} is above chance at "
                           f"p < 0.05 after correcting for all layers ({curve.n_permutations} "
                           "shuffles; never at or below chance)<extra></extra>"),
        ))
    if curve.control is not None:
        ctrl_spread = curve.control_spread
        traces += [
            _band(x, curve.control, ctrl_spread, CONTROL, "control spread"),
            go.Scatter(
                x=x, y=curve.control.tolist(), mode="lines+markers",
                name="shuffled labels", line={"color": CONTROL, "width": 2},
                marker={"symbol": "x-thin", "size": 7, "line": {"width": 1.5,
                                                                "color": CONTROL}},
                customdata=ctrl_spread,
                hovertemplate=(f"layer %{{x}}<br>control {metric} %{{y:{HOVER}}} ± "
                               f"%{{customdata:{HOVER}}}<br>(the control: the same probe on "
                               "shuffled labels)"
                               "<extra></extra>"),
            ),
        ]
    traces.append(go.Scatter(
        x=[x[0], x[-1]], y=[curve.chance, curve.chance], mode="lines", name="chance",
        line={"color": "#222", "dash": "dash", "width": 1.2}, hoverinfo="skip",
        showlegend=False,   # labelled where it is drawn ("chance 0.5" at the right edge)
    ))
    where = f", read at '{at}'" if at else ""
    fig = _layout(go.Figure(traces), f"Linear probe {metric} per layer", 470,
                  detail=f"{len(curve.labels)} examples, {curve.fold_scores.shape[1]}-fold CV"
                         f"{where}",
                  xaxis_title="hidden state (0 = embeddings)", yaxis_title=f"held-out {metric}",
                  shapes=layer_marker(layer),
                  annotations=[{"text": f"chance {fmt(curve.chance)}", "xref": "paper",
                                "x": 1, "xanchor": "right", "y": curve.chance, "yref": "y",
                                "yanchor": "top", "showarrow": False,
                                "font": {"size": 10, "color": "#222"},
                                "bgcolor": "rgba(255,255,255,0.8)"}])
    return with_caption(fig, "Blue: the probe; grey ×: the control, the same probe on "
                        "shuffled labels; dashed: chance. Only the gap above grey counts; "
                        "circled layers beat the shuffles (corrected for picking the best "
                        "layer). Click a layer.")


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
            go.Histogram(x=logit[labels == c], name=fit(str(c), LEGEND_SIZE, 110),
                         opacity=0.6, nbinsx=30,
                         marker={"color": colors[c]},
                         hovertemplate=f"{c}: %{{y}} examples<extra></extra>")
            for c in curve.classes
        ])
        fig.update_layout(barmode="overlay", yaxis_title="examples",
                          xaxis_title=fit(f"probe logit (> 0: '{curve.classes[1]}')",
                                          AXIS_TITLE_SIZE, FIT_WIDTH - 65))
        caption = ("Held-out probe outputs (examples it never saw), one colour per true "
                   "label: the less they overlap, the better the layer separates them.")
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
        fig.update_layout(xaxis_title="held-out p(true class)",
                          yaxis_title="true class", xaxis_range=[0, 1], showlegend=False)
        caption = "Each dot is one example: near 1 means the probe gave its true class."
    _layout(fig, f"Layer {layer}: {curve.metric} {fmt_score(score)}", 400)
    return with_caption(fig, caption)


def readable_token(token: str) -> str:
    """How a token is shown: visible spaces kept, empty tokens as ␣, newlines as ⏎."""
    if not token:
        return "\u2423"
    return token.replace("\n", "\u23ce").replace("\t", "\u21e5")


def token_html(projection, reference: float | None = None,
               reference_name: str = "the reference") -> str:
    """Tokens of one text coloured by their projection (:data:`DIVERGING`), wrapping like text,
    with a colour legend that says where white (0) is.

    White is the reference: a projection measured from the mean of the reference texts
    (``projection.centered``, the kernel's default) is shown as it is; an uncentred one is
    centred on ``reference`` (a projection value, e.g. the mean projection of a labelled set,
    named ``reference_name``), else on the median of this text's tokens, and the legend says
    which. The first token is an attention sink with an outsized value: it stays out of the
    colour scale and is drawn uncoloured with a dashed outline (its value shows on hover), so
    it never reads as the most extreme word.
    """
    values = np.asarray(projection.values, dtype=float)
    sink = len(values) > 2          # leave the first token out of the scale
    scaled = values[1:] if sink else values
    if getattr(projection, "centered", False):
        zero, where = 0.0, (getattr(projection, "origin", "") or
                            "0 = mean of the reference texts")
    elif reference is not None:
        zero, where = float(reference), f"0 = {reference_name} (projection {fmt(reference)})"
    else:
        zero = float(np.median(scaled)) if len(scaled) else 0.0
        where = f"0 = the median token of this text (uncentred projection {fmt(zero)})"
    shifted = values - zero
    peak = float(np.abs(shifted[1:] if sink else shifted).max(initial=0.0)) or 1.0
    spans = []
    for i, (token, value) in enumerate(zip(projection.tokens, shifted)):
        shown = html.escape(readable_token(token))
        base = ("padding:2px 1px;border-radius:3px;font-family:monospace;"
                "white-space:pre-wrap")
        if sink and i == 0:
            spans.append(
                f"<span class='reprlab-token' data-sink='first' "
                f"title='{html.escape(repr(token))}"
                f": {fmt(value)} (first token, an attention sink: left out of the colour "
                f"scale)' style='background:#fff;color:#555;outline:1px dashed #999;"
                f"{base}'>{shown}</span>")
            continue
        rgb = diverging_color(value / peak)
        spans.append(
            f"<span class='reprlab-token' title='{html.escape(repr(token))}: {fmt(value)}' "
            f"style='background:rgb{rgb};color:{text_color(rgb)};{base}'>{shown}</span>"
        )
    lo, hi = diverging_color(-1), diverging_color(1)
    steps = "".join(  # solid steps (not a CSS gradient): image export paints them as they are
        f"<span style='background:rgb{diverging_color(t)};display:inline-block;width:10px;"
        "height:0.9em;vertical-align:middle'></span>" for t in np.linspace(-1, 1, 9))
    sink_note = (" The first token (dashed) is left out of the colour scale (attention sink)."
                 if sink else "")
    legend = (
        "<div class='reprlab-token-legend' style='color:#555;font-size:90%;margin-top:4px'>"
        f"<span style='background:rgb{lo};color:{text_color(lo)};padding:0 4px'>"
        f"−{fmt(peak)}</span>{steps}"
        f"<span style='background:rgb{hi};color:{text_color(hi)};padding:0 4px'>"
        f"+{fmt(peak)}</span> "
        f"projection on '{html.escape(projection.direction)}' at layer {projection.layer} "
        f"({projection.inner} inner product); white: {html.escape(where)}; blue tokens "
        f"point along the direction, vermillion against it.{sink_note} Hover a token for its "
        "value.</div>"
    )
    return ("<div class='reprlab-tokens' style='line-height:2;white-space:normal;"
            "overflow-wrap:anywhere;max-width:100%'>" + "".join(spans) + "</div>" + legend)


def projection_histogram(projections) -> go.Figure:
    """Distribution of projections for each label of a labelled set."""
    groups = projections.by_label()
    colors = class_colors(list(groups))
    fig = go.Figure([
        go.Histogram(x=values, name=fit(str(label), LEGEND_SIZE, 110), opacity=0.6,
                     nbinsx=30, marker={"color": colors[label]},
                     hovertemplate=f"{label}: %{{y}} texts<extra></extra>")
        for label, values in groups.items()
    ])
    centred = getattr(projections, "centered", False)
    _layout(fig, f"Texts on '{projections.direction}'", 380,
            detail=f"layer {projections.layer}, {projections.inner} inner product",
            barmode="overlay", yaxis_title="texts",
            xaxis_title="projection (0 = reference mean)" if centred else
            "projection (uncentred)")
    origin = getattr(projections, "origin", "") or "uncentred"
    return with_caption(fig, "One colour per label: if the direction captures the concept, the "
                        f"colours sit apart along the x-axis ({origin}).")


def _place(where: str) -> str:
    return "in unembedding space" if where == "unembedding" else f"at {where}"


def similarity_heatmap(matrix, excluded: dict[str, str] | None = None,
                       where: str | None = None) -> go.Figure:
    """Cosine similarities between directions under one inner product.

    ``excluded`` names the registered directions that are not in the matrix and where they live
    (``{name: direction.where}``, e.g. ``{"sentiment@12": "layer 12"}``); ``where`` is where the
    compared ones live (``"layer 8"``). Cosines only compare directions in one space, so the
    figure says why each excluded one is left out instead of asking to build another.
    """
    names = list(matrix.names)
    excluded = dict(excluded or {})
    fig = go.Figure(go.Heatmap(
        z=matrix.values, x=names, y=names, zmin=-1, zmax=1, colorscale=DIVERGING,
        text=[[fmt(v, 2) for v in row] for row in np.asarray(matrix.values)],
        texttemplate="%{text}", colorbar={"title": {"text": "cosine", "side": "right"},
                                            "thickness": 12},
        hovertemplate=f"%{{y}} · %{{x}}: %{{z:{HOVER}}}<extra></extra>",
    ))
    spread = matrix.mean_abs_off_diagonal()
    if len(names) >= 2:
        summary = f"mean |off-diagonal| {fmt(spread, 2)}"
    elif excluded:
        summary = "nothing comparable yet"
    else:
        summary = "build another to compare"
    null = getattr(matrix, "null_mean_abs", None)
    detail = f"{matrix.inner} · {summary}"
    title = title_text("Cosine between directions", detail)
    if null is not None:
        nb = "\u00a0"  # no line break inside "95% < 0.075"
        line = (f"{matrix.null_what}: mean |cos| {fmt(null, 2)}, 95%{nb}<{nb}"
                f"{fmt(matrix.null_high, 2)}")
        title += f"<br>{detail_lines(line)}"
    _layout(fig, "", 380, yaxis={"autorange": "reversed", "title": {"text": "direction"}},
            xaxis_title="direction")
    fig.update_layout(title_text=title, margin={"l": 100, "b": 80})
    caption = ("Blue: same way (+1); vermillion: opposite (-1); white: unrelated (0). "
               "Compare the cells with the null.")
    if excluded:
        here = f", this one {_place(where)}" if where else ""
        shown = list(excluded.items())[:2]
        notes = [f"'{n}' is {_place(w)}{here}: not compared." for n, w in shown]
        if len(excluded) > len(shown):
            notes.append(f"{len(excluded) - len(shown)} more elsewhere: not compared.")
        caption = " ".join(notes) + " Cosines compare directions in one space. " + caption
    return with_caption(fig, caption)


def cyclic_colors(k: int) -> list[str]:
    """One hue per item around the color wheel, so neighbours in the cycle look alike."""
    return [f"hsl({round(360 * i / k)}, 70%, 45%)" for i in range(k)]


MAP_METHOD_NAMES = {"pca": "PCA", "umap": "UMAP", "circle_probe": "circle probe (held out)"}


def circular_scatter(analysis: CircularAnalysis, layer: int) -> go.Figure:
    """Examples at ``layer`` in 2-D, colored by item; item means joined in cyclic order, each
    labelled outward from the centre so that no two labels collide (placed for the narrowest
    figure, :data:`FIT_WIDTH`)."""
    xy = np.asarray(analysis.coords[layer], dtype=float)
    means = np.asarray(analysis.item_means(layer), dtype=float)
    colors = cyclic_colors(len(analysis.items))
    texts = np.asarray(analysis.texts)
    labels = short_labels(analysis.items)
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
        x=means[:, 0], y=means[:, 1], mode="markers", text=list(analysis.items),
        name="item means", showlegend=False,
        marker={"color": colors, "size": 13, "line": {"color": "#222", "width": 1}},
        hovertemplate="%{text} (mean)<extra></extra>",
    ))
    fig = _layout(go.Figure(traces), f"{analysis.cycle} at layer {layer}", 440,
                  detail=f"{MAP_METHOD_NAMES[analysis.map_method]}, {analysis.inner}",
                  xaxis={"zeroline": False, "title": {"text": "component 1"}},
                  yaxis={"zeroline": False, "scaleanchor": "x", "title": {"text": "component 2"}})
    fig.update_layout(margin={"l": 50, "b": 40})
    with_caption(fig, "Small dots: one example each, coloured by item; big dots: item means, "
                 "joined in cyclic order. A loop without crossings suggests a circle.")
    margin = {k: getattr(fig.layout.margin, k) for k in "lrtb"}
    frame = map_frame(np.vstack([xy, means]), FIT_WIDTH, fig.layout.height, margin)
    pixels = to_pixels(means, frame)
    markers = [(x - 7, y - 7, x + 7, y + 7) for x, y in pixels]
    offsets = place_labels(pixels, labels, markers, bounds=(0, 0, FIT_WIDTH, fig.layout.height))
    fig.update_layout(
        xaxis_range=frame["x"], yaxis_range=frame["y"],
        annotations=[{"x": float(m[0]), "y": float(m[1]), "text": label, "showarrow": True,
                      "ax": dx, "ay": dy, "axref": "pixel", "ayref": "pixel",
                      "arrowhead": 0, "arrowwidth": 0.8, "arrowcolor": "#999", "standoff": 7,
                      "font": {"size": LABEL_SIZE, "color": "#222"},
                      "hovertext": str(item)}
                     for m, (dx, dy), label, item in zip(means, offsets, labels,
                                                         analysis.items)])
    return fig


def circularity_curve(analysis: CircularAnalysis, layer: int | None = None) -> go.Figure:
    """Per layer: rank correlation of item-mean distances with cyclic and linear distance,
    and the permutation null band for the cyclic one."""
    s = analysis.stats
    x = list(analysis.layers)
    traces = [
        go.Scatter(x=x + x[::-1], y=s.null_high.tolist() + s.null_low.tolist()[::-1],
                   fill="toself", fillcolor=CONTROL, opacity=0.25, line={"width": 0},
                   name="null (shuffled)", hoverinfo="skip"),
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
                   name="circular, p<0.05",
                   marker={"color": SCORE, "size": 12, "symbol": "circle-open",
                           "line": {"width": 2}},
                   hovertemplate="layer %{x}: circular, cyclic beyond linear order at "
                                 "p < 0.05, corrected for all layers<extra></extra>"),
    ]
    fig = _layout(go.Figure(traces), "Do distances follow the cycle?", 440,
                  detail="rank correlation of item-mean distances",
                  xaxis_title="hidden state (0 = embeddings)",
                  yaxis_title="Spearman ρ with distance", yaxis_range=[-1, 1],
                  shapes=layer_marker(layer))
    fig.update_layout(margin={"l": 50, "b": 40})
    return with_caption(fig, "Blue above the grey band (shuffled orders) and above the "
                        "dotted line (linear order) suggests a circle; circled layers pass, "
                        "corrected for looking at every layer.")
