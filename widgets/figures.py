"""Pure figure functions: a kernel result in, a plotly figure out, no widget state.

They are what the views draw, and they work on their own for static export:

>>> probe_curve_figure(curve, layer=12).write_html("curve.html")   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from reprlab import ProbeCurve

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
SCORE, CONTROL = "#1f5fa8", "#9a9a9a"


def layer_marker(layer: int | None) -> list[dict]:
    """Layout shapes for the vertical line that marks the chosen layer (none for ``None``)."""
    if layer is None:
        return []
    return [{"type": "line", "x0": layer, "x1": layer, "yref": "paper", "y0": 0, "y1": 1,
             "line": {"color": "#e07b00", "width": 2}}]


def _band(x, mid, spread, color: str, name: str) -> go.Scatter:
    x = list(x)
    upper, lower = (mid + spread).tolist(), (mid - spread).tolist()
    return go.Scatter(
        x=x + x[::-1], y=upper + lower[::-1], fill="toself", fillcolor=color, opacity=0.18,
        line={"width": 0}, hoverinfo="skip", showlegend=False, name=name,
    )


def probe_curve_figure(curve: ProbeCurve, layer: int | None = None) -> go.Figure:
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
            hovertemplate=(f"layer %{{x}}<br>{metric} %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                           "<br>selectivity %{customdata[1]:.3f}<extra></extra>"),
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
        level = curve.threshold()
        traces.append(go.Scatter(
            x=[x[0], x[-1]], y=[level, level], mode="lines",
            name="95% of shuffles' best layer", line={"color": CONTROL, "dash": "dash", "width": 1},
            hovertemplate=f"shuffled labels' best layer stays below {level:.3f} in 95% of "
                          f"{curve.n_permutations} shuffles<extra></extra>",
        ))
    if curve.control is not None:
        ctrl_spread = curve.control_spread
        traces += [
            _band(x, curve.control, ctrl_spread, CONTROL, "control spread"),
            go.Scatter(
                x=x, y=curve.control.tolist(), mode="lines", name="control (shuffled labels)",
                line={"color": CONTROL, "dash": "dot"}, customdata=ctrl_spread,
                hovertemplate=(f"layer %{{x}}<br>control {metric} %{{y:.3f}} ± "
                               "%{customdata:.3f}<extra></extra>"),
            ),
        ]
    traces.append(go.Scatter(
        x=[x[0], x[-1]], y=[curve.chance, curve.chance], mode="lines", name="chance",
        line={"color": "#444", "dash": "dash", "width": 1}, hoverinfo="skip",
    ))
    fig = go.Figure(traces)
    fig.update_layout(
        title=f"{metric.capitalize()} of a linear probe per layer ({len(curve.labels)} examples, "
              f"{curve.fold_scores.shape[1]}-fold CV)",
        xaxis_title="hidden state (0 = embeddings)", yaxis_title=metric,
        shapes=layer_marker(layer), height=380, margin={"l": 55, "r": 10, "t": 45, "b": 45},
        legend={"orientation": "h", "y": -0.2}, template="plotly_white",
    )
    return fig


def probe_layer_figure(curve: ProbeCurve, layer: int) -> go.Figure:
    """Held-out probe outputs of every example at ``layer``, by class (or vs. the target)."""
    labels = np.asarray(curve.labels, dtype=object)
    i = curve.index(layer)
    score = curve.scores[i]
    if curve.task == "regression":
        pred = curve.heldout_scores(layer).numpy()
        target = labels.astype(float)
        lo, hi = float(min(target.min(), pred.min())), float(max(target.max(), pred.max()))
        fig = go.Figure([
            go.Scatter(x=target, y=pred, mode="markers", name="examples",
                       text=list(curve.texts), marker={"color": SCORE, "opacity": 0.6},
                       hovertemplate="%{text}<br>target %{x:.3g}, predicted %{y:.3g}"
                                     "<extra></extra>"),
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect",
                       line={"color": "#444", "dash": "dash", "width": 1}),
        ])
        fig.update_layout(xaxis_title="target", yaxis_title="held-out prediction")
    elif len(curve.classes) == 2:
        logit = curve.heldout_scores(layer).numpy()
        fig = go.Figure([
            go.Histogram(x=logit[labels == c], name=str(c), opacity=0.6, nbinsx=30,
                         marker={"color": PALETTE[k]},
                         hovertemplate=f"{c}: %{{y}} examples<extra></extra>")
            for k, c in enumerate(curve.classes)
        ])
        fig.update_layout(barmode="overlay", xaxis_title=f"held-out probe logit "
                          f"(> 0 means '{curve.classes[1]}')", yaxis_title="examples")
    else:
        probs = curve.heldout_probabilities(layer).numpy()
        own = probs[np.arange(len(labels)), [curve.classes.index(v) for v in labels]]
        fig = go.Figure([
            go.Box(x=own[labels == c], name=str(c), boxpoints="all", jitter=0.5,
                   marker={"color": PALETTE[k % len(PALETTE)]},
                   text=[t for t, lab in zip(curve.texts, labels) if lab == c],
                   hovertemplate="%{text}<br>p(own class) %{x:.2f}<extra></extra>")
            for k, c in enumerate(curve.classes)
        ])
        fig.update_layout(xaxis_title="held-out probability of the true class",
                          xaxis_range=[0, 1], showlegend=False)
    fig.update_layout(
        title=f"Layer {layer}: {curve.metric} {score:.3f}",
        height=380, margin={"l": 55, "r": 10, "t": 45, "b": 45}, template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def token_html(projection) -> str:
    """Tokens of one text colored by their projection (blue negative, red positive)."""
    import html

    values = np.asarray(projection.values, dtype=float)
    # The first token is an attention sink with outsized activations: keep it out of the color
    # scale (its value still shows on hover), and clip anything beyond the scale.
    scaled = values[1:] if len(values) > 2 else values
    peak = float(np.abs(scaled).max()) or 1.0
    spans = []
    for token, value in zip(projection.tokens, values):
        t = float(np.clip(value / peak, -1, 1))
        rgb = (255, int(255 * (1 - t)), int(255 * (1 - t))) if t > 0 else \
            (int(255 * (1 + t)), int(255 * (1 + t)), 255)
        shown = html.escape(token).replace(" ", "&nbsp;") or "&#9251;"
        spans.append(
            f"<span title='{html.escape(token)!s}: {value:+.3f}' style='background:rgb{rgb};"
            f"padding:2px 1px;border-radius:3px;font-family:monospace'>{shown}</span>"
        )
    legend = (f"<div style='color:#555;font-size:90%;margin-top:4px'>layer {projection.layer}, "
              f"{projection.inner} projection on '{html.escape(projection.direction)}', "
              f"{html.escape(getattr(projection, 'origin', ''))}; "
              f"color scale ±{peak:.3g}, first token excluded (attention sink); hover a token for "
              f"its value</div>")
    return "<div style='line-height:2'>" + "".join(spans) + "</div>" + legend


def projection_histogram(projections) -> go.Figure:
    """Distribution of projections for each label of a labelled set."""
    groups = projections.by_label()
    fig = go.Figure([
        go.Histogram(x=values, name=str(label), opacity=0.6, nbinsx=30,
                     marker={"color": PALETTE[k % len(PALETTE)]})
        for k, (label, values) in enumerate(groups.items())
    ])
    fig.update_layout(
        barmode="overlay", title=f"Projections on '{projections.direction}' at layer "
        f"{projections.layer} ({projections.inner})",
        xaxis_title="projection (" + getattr(projections, "origin", "") + ")",
        yaxis_title="texts", height=340, margin={"l": 50, "r": 10, "t": 45, "b": 40},
        template="plotly_white", legend={"orientation": "h", "y": -0.25},
    )
    return fig


def similarity_heatmap(matrix) -> go.Figure:
    """Cosine similarities between directions under one inner product."""
    names = list(matrix.names)
    fig = go.Figure(go.Heatmap(
        z=matrix.values, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
        text=np.round(matrix.values, 2), texttemplate="%{text}",
        hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>",
    ))
    spread = matrix.mean_abs_off_diagonal()
    summary = "one direction: build another to compare" if len(names) < 2 else \
        f"mean |off-diagonal| {spread:.2f}"
    null = getattr(matrix, "null_mean_abs", None)
    if null is not None:
        summary += (f"<br><sup>{matrix.null_what}: mean |cos| {null:.2f}, 95% below "
                    f"{matrix.null_high:.2f}</sup>")
    fig.update_layout(
        title=f"Cosine under the {matrix.inner} inner product ({summary})",
        height=340, margin={"l": 100, "r": 10, "t": 45, "b": 80}, template="plotly_white",
        yaxis={"autorange": "reversed"},
    )
    return fig


def cyclic_colors(k: int) -> list[str]:
    """One hue per item around the color wheel, so neighbours in the cycle look alike."""
    return [f"hsl({round(360 * i / k)}, 70%, 45%)" for i in range(k)]


def circular_scatter(view, layer: int) -> go.Figure:
    """Examples at ``layer`` in 2-D, colored by item; item means joined in cyclic order."""
    xy = view.coords[layer]
    means = view.item_means(layer)
    colors = cyclic_colors(len(view.items))
    texts = np.asarray(view.texts)
    traces = [
        go.Scatter(
            x=xy[view.item_index == k, 0], y=xy[view.item_index == k, 1], mode="markers",
            name=item, marker={"color": colors[k], "size": 7, "opacity": 0.55},
            text=texts[view.item_index == k], hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
        for k, item in enumerate(view.items)
    ]
    loop = np.vstack([means, means[:1]])
    traces.append(go.Scatter(x=loop[:, 0], y=loop[:, 1], mode="lines", name="cyclic order",
                             line={"color": "#333", "width": 1.5}, hoverinfo="skip",
                             showlegend=False))
    traces.append(go.Scatter(
        x=means[:, 0], y=means[:, 1], mode="markers+text", text=list(view.items),
        textposition="top center", name="item means", showlegend=False,
        marker={"color": colors, "size": 13, "line": {"color": "#222", "width": 1}},
        hovertemplate="%{text} (mean)<extra></extra>",
    ))
    method = {"pca": "PCA", "umap": "UMAP", "circle_probe": "circle probe (held out)"}
    fig = go.Figure(traces)
    fig.update_layout(
        title=f"{view.cycle} at layer {layer}: {method[view.method]}, {view.inner}",
        height=430, margin={"l": 40, "r": 10, "t": 45, "b": 35}, template="plotly_white",
        xaxis={"zeroline": False}, yaxis={"zeroline": False, "scaleanchor": "x"},
    )
    return fig


def circularity_curve(view, layer: int | None = None) -> go.Figure:
    """Per layer: rank correlation of item-mean distances with cyclic and linear distance,
    and the permutation null band for the cyclic one."""
    s = view.stats
    x = list(view.layers)
    traces = [
        go.Scatter(x=x + x[::-1], y=s.null_high.tolist() + s.null_low.tolist()[::-1],
                   fill="toself", fillcolor=CONTROL, opacity=0.25, line={"width": 0},
                   name="null (95% of shuffled orders)", hoverinfo="skip"),
        go.Scatter(x=x, y=s.rho_cyclic.tolist(), mode="lines+markers", name="ρ cyclic",
                   line={"color": SCORE, "width": 2.5},
                   customdata=np.stack([s.p_beyond_linear, s.probe_score, s.probe_control,
                                        s.p_value], 1),
                   hovertemplate=("layer %{x}: ρ cyclic %{y:.2f} (alone: p = %{customdata[3]:.2g})"
                                  "<br>cyclic beyond linear: p = %{customdata[0]:.2g}, corrected "
                                  "for all layers<br>circle probe %{customdata[1]:.2f} vs "
                                  "shuffled order %{customdata[2]:.2f}<extra></extra>")),
        go.Scatter(x=x, y=s.rho_linear.tolist(), mode="lines", name="ρ linear order",
                   line={"color": "#e07b00", "dash": "dot"},
                   hovertemplate="layer %{x}: ρ linear %{y:.2f}<extra></extra>"),
        go.Scatter(x=[x[i] for i in np.flatnonzero(s.circular)],
                   y=s.rho_cyclic[s.circular].tolist(), mode="markers",
                   name="circular: cyclic beyond linear (p < 0.05, corrected)",
                   marker={"color": SCORE, "size": 12, "symbol": "circle-open",
                           "line": {"width": 2}}, hoverinfo="skip"),
    ]
    fig = go.Figure(traces)
    fig.update_layout(
        title="Do item-mean distances follow the cycle?", xaxis_title="hidden state",
        yaxis_title="Spearman ρ with distance", yaxis_range=[-1, 1], shapes=layer_marker(layer),
        height=430, margin={"l": 50, "r": 10, "t": 45, "b": 40}, template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
