"""Figures that look finished in a ~320 px cell (issue 23): text fits and does not overlap,
three lines are told apart, map labels do not collide, the token strip is centred on its
reference, the heatmap says why a direction is not compared, and the HTML export is
responsive. A pure-Python layout check estimates text widths; a browser test (marked
``browser``) checks the exported page in Chromium at 1024 and 700 px."""

from __future__ import annotations

import html
import math
import os
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from reprlab import probe_curve
from reprlab.circular import circular_analysis
from reprlab.geometry import Projections, SimilarityMatrix, TokenProjection
from reprlab.widgets import CircularMap, ConceptProjection, ProbeCurves, SteeringPanel
from reprlab.widgets import figures as F

WIDTH = 320          # the narrowest figure: two side by side at 1024 x 768, file browser open
GLYPH = 0.6          # conservative glyph width / font size


def plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text or ""))


def width_of(text: str, size: float) -> float:
    return len(plain(text)) * GLYPH * size


def line_size(line: str, default: float) -> float:
    found = re.search(r"font-size:\s*(\d+)px", line)
    return float(found.group(1)) if found else default


def legend_names(fig) -> list[str]:
    if fig.layout.showlegend is False:
        return []
    names = [t.name for t in fig.data
             if t.showlegend is not False and t.name and t.type != "heatmap"]
    return names if len(names) >= 2 else []


def layout_problems(fig, width: float = WIDTH) -> list[str]:
    """What does not fit a ``width`` px figure: each title and caption line, each legend
    entry, the axis titles; margins that leave no room for title + caption above the plot or
    for the legend below the x-axis title; a title not pinned to the top."""
    problems = []
    lay = fig.layout
    left, right = lay.margin.l or 80, lay.margin.r or 80
    top, bottom = lay.margin.t or 100, lay.margin.b or 80
    pad = (lay.title.pad.l or 0) if lay.title.xref == "container" else 0.05 * width
    title = (lay.title.text or "").split("<br>")
    title_size = lay.title.font.size or 17
    for line in title:
        w = width_of(line, line_size(line, title_size))
        if pad + w > width:
            problems.append(f"title line {plain(line)!r}: {w:.0f} px")
    caption = lay.title.subtitle.text.split("<br>") if lay.title.subtitle.text else []
    caption_size = lay.title.subtitle.font.size or 12
    for line in caption:
        w = width_of(line, caption_size)
        if pad + w > width:
            problems.append(f"caption line {plain(line)!r}: {w:.0f} px")
    if not (lay.title.yref == "container" and lay.title.y == 1 and lay.title.yanchor == "top"):
        problems.append("title not pinned to the container top")
    needed = ((lay.title.pad.t or 0) + 1.3 * title_size * len(title)
              + 1.3 * caption_size * len(caption) + 8)   # + half a tick label
    if top < needed:
        problems.append(f"margin_t {top} < {needed:.0f} for title + caption")
    names = legend_names(fig)
    legend_size = lay.legend.font.size or 12
    plot_w = width - left - right
    entries = [45 + width_of(name, legend_size) for name in names]   # symbol, gaps, text
    for name, entry in zip(names, entries):
        if entry > plot_w:
            problems.append(f"legend entry {name!r}: {entry:.0f} px > {plot_w:.0f}")
    # plotly.js: one row when all fit the plot width, else columns of the widest entry
    rows = 0 if not names else 1 if sum(entries) <= plot_w else \
        -(-len(names) // max(1, int(plot_w // max(entries))))
    if names:
        if not (lay.legend.yref == "container" and lay.legend.yanchor == "bottom"
                and (lay.legend.y or 0) <= 0.01 and (lay.legend.x or 0) >= 0):
            problems.append("legend not at the container bottom")
        needed = 22 + (20 if lay.xaxis.title.text else 0) + 18 * rows  # ticks, title, rows
        if bottom < needed:
            problems.append(f"margin_b {bottom} < {needed} for {rows} legend rows")
    plot_w, plot_h = width - left - right, (lay.height or 450) - top - bottom
    if plot_h < 120:
        problems.append(f"plot area only {plot_h:.0f} px high")
    for axis, room in ((lay.xaxis, plot_w), (lay.yaxis, plot_h)):
        if axis.title.text and width_of(axis.title.text, axis.title.font.size or 14) > room:
            problems.append(f"axis title {axis.title.text!r} longer than {room:.0f} px")
    for note in lay.annotations or ():
        for line in (note.text or "").split("<br>"):
            if width_of(line, note.font.size or 12) > plot_w:
                problems.append(f"annotation {plain(line)!r} wider than the plot")
    return problems


# -- kernel results on the tiny model, or built by hand ---------------------------------------

@pytest.fixture(scope="module")
def results():
    from reprlab import Session, datasets

    tiny = Session.tiny(seed=0)
    data = datasets.load("sentiment")
    acts = tiny.activations(list(data.texts), at="mean")
    curve = probe_curve(acts, list(data.labels), folds=3, n_permutations=30)
    regression = probe_curve(acts, np.linspace(0, 1, len(data.labels)), folds=3,
                             n_permutations=20)
    multi = probe_curve(acts, [f"class {i % 3}" for i in range(len(data.labels))], folds=3,
                        n_permutations=20)
    circle = circular_analysis(tiny, "months", layers=[1, 2], n_permutations=50)
    return SimpleNamespace(curve=curve, regression=regression, multi=multi, circle=circle)


def all_figures(results):
    r = results
    proj = Projections(np.linspace(-2, 2, 40), tuple(["positive", "negative"] * 20),
                       tuple(f"t{i}" for i in range(40)), 8, "standardized", "sentiment@8-probe")
    matrix = SimilarityMatrix(("sentiment@8", "truth@8-probe", "my pairs"),
                              np.array([[1, .2, -.1], [.2, 1, .3], [-.1, .3, 1.]]), "whitened",
                              0.1, 0.25, "random directions")
    single = SimilarityMatrix(("sentiment@8",), np.ones((1, 1)), "euclidean")
    return {
        "probe curve": F.probe_curve_figure(r.curve, 2, at="word 'wonderful'"),
        "probe layer (binary)": F.probe_layer_figure(r.curve, 2),
        "probe layer (regression)": F.probe_layer_figure(r.regression, 2),
        "probe layer (classes)": F.probe_layer_figure(r.multi, 2),
        "projection histogram": F.projection_histogram(proj),
        "heatmap": F.similarity_heatmap(matrix),
        "heatmap, one direction, others elsewhere": F.similarity_heatmap(
            single, {"sentiment@12-probe": "layer 12", "gender": "unembedding"}, "layer 8"),
        "circular map": F.circular_scatter(r.circle, 2),
        "circularity curve": F.circularity_curve(r.circle, 2),
    }


def test_every_figure_fits_a_320_px_cell(results):
    problems = {name: p for name, fig in all_figures(results).items()
                if (p := layout_problems(fig))}
    assert not problems, problems


def test_the_layout_check_catches_what_the_old_figures_did():
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(y=[1, 2], name="above chance (p < 0.05, corrected for all "
                                                 "layers)"), go.Scatter(y=[2, 1], name="b")])
    fig.update_layout(title="Linear probe accuracy per layer (240 examples, 5-fold CV, read "
                            "at 'last')", legend={"orientation": "h", "y": -0.22})
    problems = " | ".join(layout_problems(fig))
    assert "title line" in problems and "legend entry" in problems
    assert "not pinned" in problems and "legend not at the container bottom" in problems


def test_probe_layer_title_starts_with_the_layer(results):
    fig = F.probe_layer_figure(results.curve, 2)
    assert fig.layout.title.text.startswith("Layer 2:")   # browser tests read .gtitle text


def test_probe_curve_details_move_to_a_second_line_and_the_caption(results):
    fig = F.probe_curve_figure(results.curve, 1, at="last")
    first, *rest = fig.layout.title.text.split("<br>")
    assert first == "Linear probe accuracy per layer"
    assert rest and f"{len(results.curve.labels)} examples" in rest[0] and "3-fold CV" in rest[0]
    assert "corrected" in fig.layout.title.subtitle.text
    circled = next(t for t in fig.data if t.name == "above chance")
    assert "corrected for all layers" in circled.hovertemplate


# -- item 3: control, chance and probe are three different lines -----------------------------

def test_control_and_chance_read_as_two_lines(results):
    fig = F.probe_curve_figure(results.curve, 1)
    by_name = {t.name: t for t in fig.data}
    control, chance = by_name["shuffled labels"], by_name["chance"]
    probe = by_name["probe accuracy"]
    assert "markers" in control.mode and "markers" not in chance.mode
    assert control.line.color == F.CONTROL and chance.line.color != F.CONTROL
    assert chance.line.dash == "dash" and control.line.dash in (None, "solid")
    assert probe.line.color == F.POSITIVE and probe.line.dash in (None, "solid")
    # chance is named where it is drawn, at the right edge, at its height
    label = next(a for a in fig.layout.annotations if a.text.startswith("chance"))
    assert label.text == f"chance {F.fmt(results.curve.chance)}"
    assert label.x == 1 and label.xref == "paper" and label.y == results.curve.chance
    # the control keeps its band, the legend lists each line once
    bands = [t for t in fig.data if t.fill == "toself" and t.fillcolor == F.CONTROL]
    assert len(bands) == 1 and bands[0].showlegend is False
    names = legend_names(fig)
    assert len(names) == len(set(names)) and "shuffled labels" in names
    assert chance.showlegend is False     # named on the plot instead, where it is drawn
    assert by_name["above chance"].showlegend is False     # explained by the caption:
    assert "circled" in fig.layout.title.subtitle.text
    assert "control" in control.hovertemplate and "control" in fig.layout.title.subtitle.text


# -- item 7: map labels do not collide ---------------------------------------------------------

def label_boxes(fig, width: float = WIDTH) -> list[tuple]:
    """Estimated pixel boxes of the map's labels at ``width`` (from the spec alone)."""
    lay = fig.layout
    (x0, x1), (y0, y1) = lay.xaxis.range, lay.yaxis.range
    plot_w = width - lay.margin.l - lay.margin.r
    plot_h = lay.height - lay.margin.t - lay.margin.b
    scale = min(plot_w / (x1 - x0), plot_h / (y1 - y0))   # scaleanchor: one unit, one length
    cx, cy = lay.margin.l + plot_w / 2, lay.margin.t + plot_h / 2
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    boxes = []
    for a in lay.annotations:
        px, py = cx + (a.x - mx) * scale + a.ax, cy - (a.y - my) * scale + a.ay
        w, h = width_of(a.text, a.font.size) + 2, 1.2 * a.font.size
        boxes.append((px - w / 2, py - h / 2, px + w / 2, py + h / 2))
    return boxes


def overlapping(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i][0] < boxes[j][2] and boxes[j][0] < boxes[i][2]
            and boxes[i][1] < boxes[j][3] and boxes[j][1] < boxes[i][3]]


def planted_map(means: np.ndarray, spread: float, items) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    k = len(items)
    index = np.repeat(np.arange(k), 5)
    xy = means[index] + spread * rng.standard_normal((len(index), 2))
    return SimpleNamespace(
        coords={3: xy}, items=tuple(items), item_index=index,
        texts=tuple(f"text {i}" for i in range(len(index))), cycle="months",
        map_method="pca", inner="euclidean",
        item_means=lambda layer: np.stack([xy[index == i].mean(0) for i in range(k)]))


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


@pytest.mark.parametrize("shape", ["circle", "cluster", "line", "one point"])
def test_month_labels_do_not_collide(shape):
    angle = 2 * np.pi * np.arange(12) / 12
    means = {"circle": np.stack([np.cos(angle), np.sin(angle)], 1),
             "cluster": 0.02 * np.stack([np.cos(angle), np.sin(angle)], 1),  # all in ~5 px
             "line": np.stack([np.linspace(0, 1, 12), np.zeros(12)], 1),
             "one point": np.zeros((12, 2))}[shape]
    spread = 0.3 if shape != "circle" else 0.05
    fig = F.circular_scatter(planted_map(means, spread, MONTHS), 3)
    labels = [a.text for a in fig.layout.annotations]
    assert labels == [m[:3] for m in MONTHS]           # short labels, full names on hover
    assert [a.hovertext for a in fig.layout.annotations] == list(MONTHS)
    boxes = label_boxes(fig)
    assert not overlapping(boxes), overlapping(boxes)
    for wider in (450, 700):                           # placed at 320 px, still apart when wider
        assert not overlapping(label_boxes(fig, wider)), wider
    assert all(0 <= b[0] and b[2] <= WIDTH for b in boxes), boxes
    trace = next(t for t in fig.data if t.name == "item means")
    assert trace.mode == "markers"                      # no text on the markers themselves


def test_labels_of_a_computed_map_do_not_collide(results):
    for layer in results.circle.coords:
        fig = F.circular_scatter(results.circle, layer)
        assert len(fig.layout.annotations) == len(results.circle.items)
        assert not overlapping(label_boxes(fig)), layer


def test_circle_labels_point_outward():
    angle = 2 * np.pi * np.arange(12) / 12
    means = np.stack([np.cos(angle), np.sin(angle)], 1)
    fig = F.circular_scatter(planted_map(means, 0.05, MONTHS), 3)
    for a, t in zip(fig.layout.annotations, angle):
        outward = a.ax * math.cos(t) - a.ay * math.sin(t)   # pixels: y grows downward
        assert outward > 0, (a.text, a.ax, a.ay)


# -- item 8: the token strip is centred on its reference ---------------------------------------

def span_colors(strip: str) -> list[str]:
    return re.findall(r"<span class='reprlab-token'[^>]*?style='background:([^;]+);", strip)


def rgb(text: str) -> tuple[int, ...]:
    if text.startswith("#"):
        text = "#" + "".join(c * 2 for c in text[1:]) if len(text) == 4 else text
        return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(v) for v in re.findall(r"\d+", text))


def near_white(color: str) -> bool:
    return min(rgb(color)) >= 225


def test_a_neutral_token_is_white_and_the_sink_is_not_vermillion():
    tokens = ("The", " movie", " was", " wonderful", ",", " terrible")
    values = np.array([-60.0, 0.1, -0.2, 6.0, 0.3, -5.0])   # "The": an attention sink
    strip = F.token_html(TokenProjection("".join(tokens), tokens, values, 8, "euclidean",
                                         "sentiment@8"))
    colors = span_colors(strip)
    assert len(colors) == len(tokens)
    assert near_white(colors[0]) and "data-sink='first'" in strip   # not the most negative
    assert near_white(colors[1]) and near_white(colors[2]) and near_white(colors[4])
    assert rgb(colors[3]) == F.diverging_color(1) and rgb(colors[5])[0] > 200
    assert "white: 0 = mean of the reference texts" in plain(strip)


def test_an_uncentred_projection_is_centred_on_its_reference():
    tokens = ("The", " movie", " was", " great", " bad")
    values = np.array([90.0, 40.1, 39.9, 46.0, 34.0])    # all positive: a common component
    uncentred = TokenProjection("x", tokens, values, 8, "euclidean", "mood", centered=False)
    strip = F.token_html(uncentred, reference=40.0, reference_name="mean of the sentiment set")
    colors = span_colors(strip)
    assert near_white(colors[1]) and near_white(colors[2])
    assert rgb(colors[3])[2] > 150 and rgb(colors[4])[0] > 200       # blue, vermillion
    assert "white: 0 = mean of the sentiment set" in plain(strip)
    median = F.token_html(uncentred)                                  # no reference given
    assert near_white(span_colors(median)[1]) and "median token" in plain(median)


# -- item 9: the heatmap says why a direction is not compared ----------------------------------

def test_heatmap_says_why_other_directions_are_not_compared():
    single = SimilarityMatrix(("sentiment@8",), np.ones((1, 1)), "euclidean")
    fig = F.similarity_heatmap(single, {"x": "layer 12", "gender": "unembedding"}, "layer 8")
    text = plain(fig.layout.title.subtitle.text.replace("<br>", " "))
    assert "'x' is at layer 12, this one at layer 8: not compared" in text
    assert "'gender' is in unembedding space, this one at layer 8: not compared" in text
    assert "build another" not in plain(fig.layout.title.text)
    alone = F.similarity_heatmap(single)
    assert "build another to compare" in plain(alone.layout.title.text)
    many = F.similarity_heatmap(single, {f"d{i}": "layer 3" for i in range(5)}, "layer 8")
    assert "3 more elsewhere" in plain(many.layout.title.subtitle.text.replace("<br>", " "))
    assert not layout_problems(many)


# -- item 2 and 12: the HTML export ------------------------------------------------------------

@pytest.fixture(scope="module")
def views():
    from reprlab import Session

    tiny = Session.tiny(seed=0)
    return SimpleNamespace(
        probes=ProbeCurves(tiny, background=False),
        concept=ConceptProjection(tiny, background=False),
        circle=CircularMap(tiny, background=False, warm=False, n_permutations=50),
        steering=SteeringPanel(tiny, background=False))


def test_exported_figures_are_responsive_with_no_fixed_width(views, tmp_path):
    for view in (views.probes, views.concept):
        for plot in view.plots():
            plot.figure.layout.width = 900      # what a live session may have set
        text = view.export_html(tmp_path / "v.html").read_text("utf-8")
        assert text.count("Plotly.newPlot") == len(view.figures()) == 2
        assert text.count('"responsive": true') == 2
        assert '"width": 900' not in text and "'width':900" not in text
        assert "flex:1 1 320px;min-width:0" in text
        # figures are drawn once the whole page exists (after the last cell)
        assert text.index("Plotly.newPlot") > text.rindex("reprlab-export-cell")
        assert text.count("plotly.js v") == 1 and "<script src=" not in text


def test_a_view_without_figures_exports_small_valid_html(views, tmp_path):
    text = views.steering.export_html(tmp_path / "steering.html").read_text("utf-8")
    assert len(text.encode()) < 200_000 and "plotly.js v" not in text
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</body></html>")
    assert "<b>steered</b>" in text
    from html.parser import HTMLParser

    HTMLParser().feed(text)   # parses


def test_figure_json_cannot_close_its_script(views, tmp_path):
    import plotly.graph_objects as go

    plot = views.probes.curve_fig
    shown = plot.figure
    plot.draw(go.Figure(go.Scatter(x=[0], y=[1], name="</script><b>x")))
    try:
        text = views.probes.export_html(tmp_path / "p.html").read_text("utf-8")
        assert "</script><b>x" not in text and "<\\/script><b>x" in text
    finally:
        plot.draw(shown)


# -- in a browser ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

def _evaluate_in_chromium(path, viewport: dict, ready: str, script: str):
    """Open ``path`` in headless Chromium at ``viewport``, wait until ``ready`` holds, return
    what ``script`` evaluates to (skipped without chromium or playwright)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("no chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport=viewport)
            page.goto(path.as_uri())
            page.wait_for_function(ready)
            return page.evaluate(script)
        finally:
            browser.close()


MEASURE = """() => {
  const page = document.documentElement.clientWidth;
  return [...document.querySelectorAll('.reprlab-export-plot')].map((gd) => {
    const box = gd.getBoundingClientRect();
    const svg = gd.querySelector('.main-svg').getBoundingClientRect();
    const rect = (sel) => { const e = gd.querySelector(sel); if (!e) return null;
                            const r = e.getBoundingClientRect();
                            return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
    return {page, left: box.left, right: box.right, svgRight: svg.right, svgLeft: svg.left,
            svgTop: svg.top,
            title: rect('.gtitle'), subtitle: rect('.gtitle-subtitle'),
            plotArea: rect('.draglayer .nsewdrag'),
            ytick: [...gd.querySelectorAll('.ytick text')].map((e) => e.getBoundingClientRect())
                     .reduce((a, r) => (a && a.top <= r.top ? a : {top: r.top}), null),
            xtitle: rect('.g-xtitle'), legend: rect('.legend')};
  });
}"""


@pytest.mark.browser
@pytest.mark.parametrize("width", [1024, 700])
def test_exported_figures_fit_the_page_in_a_browser(views, tmp_path, width):
    for view in (views.probes, views.concept, views.circle):
        path = view.export_html(tmp_path / f"{type(view).__name__}.html")
        plots = _evaluate_in_chromium(
            path, {"width": width, "height": 800},
            "document.querySelectorAll('.reprlab-export-plot .main-svg').length >= 2", MEASURE)
        assert len(plots) >= 2
        for i, b in enumerate(plots):
            where = f"{type(view).__name__} figure {i} at {width} px: {b}"
            assert b["left"] >= 0 and b["right"] <= b["page"] + 0.5, where
            assert b["svgLeft"] >= b["left"] - 0.5 and b["svgRight"] <= b["right"] + 1, where
            if b["title"]:
                assert b["title"]["right"] <= b["svgRight"] + 1, where
                assert b["title"]["top"] >= b["svgTop"], where
            if b["subtitle"] and b["ytick"]:
                assert b["subtitle"]["bottom"] <= min(b["ytick"]["top"],
                                                      b["plotArea"]["top"]), where
            if b["legend"] and b["xtitle"]:
                assert b["legend"]["top"] >= b["xtitle"]["bottom"], where


def test_image_buttons_take_the_token_strip_along():
    from reprlab.widgets.plot import _BUTTONS_ESM

    assert ".reprlab-tokens, .reprlab-token-legend" in _BUTTONS_ESM
    assert "paintHtml" in _BUTTONS_ESM and "svgHtml" in _BUTTONS_ESM


IMAGE_CHECK = """async () => {
  const root = document.querySelector('.reprlab-view');
  const parts = __reprlabImage.partsOf(root, []);
  const svg = await (await __reprlabImage.svgOf(Plotly, parts)).text();
  const png = await __reprlabImage.pngOf(Plotly, parts, 1);
  const img = new Image();
  img.src = URL.createObjectURL(png);
  await new Promise((ok) => { img.onload = ok; });
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const frame = parts.map((p) => p.el.getBoundingClientRect());
  const left = Math.min(...frame.map((b) => b.left)), top = Math.min(...frame.map((b) => b.top));
  const token = document.querySelectorAll('.reprlab-token')[3].getBoundingClientRect();
  const pixel = [...ctx.getImageData(Math.round(token.left - left + 1),
                                     Math.round(token.top - top + 2), 1, 1).data];
  const plot = document.getElementById('gd').getBoundingClientRect();
  return {kinds: parts.map((p) => p.plot), svg, pixel, width: img.width, height: img.height,
          expected: getComputedStyle(document.querySelectorAll('.reprlab-token')[3])
                      .backgroundColor,
          plotBottom: plot.bottom - top};
}"""


@pytest.mark.browser
def test_png_and_svg_hold_the_coloured_tokens_in_a_browser(tmp_path):
    from importlib.resources import files

    from reprlab.widgets.plot import _BUTTONS_ESM

    tokens = ("The", " movie", " was", " wonderful", " but", " terrible")
    strip = F.token_html(TokenProjection("".join(tokens), tokens,
                                         np.array([-60.0, 0.1, -0.2, 6.0, 0.3, -5.0]), 8,
                                         "euclidean", "sentiment@8"))
    plotly_js = files("plotly").joinpath("package_data", "plotly.min.js").read_text("utf-8")
    page_html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{plotly_js}"
                 "</script></head><body><div class='reprlab-view' style='width:600px'>"
                 f"{strip}<div class='reprlab-plot-area' id='gd' style='width:400px;"
                 "height:250px'></div></div><script>Plotly.newPlot('gd', [{y: [1, 3, 2]}],"
                 " {margin: {t: 10}})</script><script type='module'>"
                 f"{_BUTTONS_ESM}</script></body></html>")
    path = tmp_path / "image.html"
    path.write_text(page_html, "utf-8")
    got = _evaluate_in_chromium(
        path, {"width": 800, "height": 700},
        "window.__reprlabImage && document.querySelector('#gd .main-svg')", IMAGE_CHECK)
    assert got["kinds"] == [False, False, True]          # strip, legend, then the figure
    assert ">wonderful</text>" in got["svg"] and ">movie</text>" in got["svg"]
    assert "stroke-dasharray" in got["svg"]              # the sink's dashed outline
    assert "attention" in got["svg"] and "<svg x=" in got["svg"]   # legend words, the figure
    expected = [int(v) for v in re.findall(r"\d+", got["expected"])[:3]]
    assert all(abs(a - b) <= 3 for a, b in zip(got["pixel"][:3], expected)), got
    assert got["height"] >= got["plotBottom"] - 1 and got["width"] >= 400
