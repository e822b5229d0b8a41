"""The figure widget every view uses: its synced state is the whole current figure (what a
reloaded page or a second display reads), clicks come back to Python, plotly.js ships offline,
and exports hold what the view shows."""

import json
from importlib.resources import files

import plotly.graph_objects as go
import pytest

from reprlab import Session
from reprlab.widgets import ConceptProjection, ProbeCurves, SteeringPanel
from reprlab.widgets.plot import ImageButtons, Plot, plotly_library


@pytest.fixture
def session():
    return Session.tiny(seed=0)


def front_end_figure(plot) -> dict:
    """The figure a new front-end view (after a reload, or a second display) is built from:
    only the widget's synced state, never earlier update messages."""
    return json.loads(plot.get_state()["spec"])


def test_synced_state_holds_the_whole_figure_after_slider_moves(session):
    w = ProbeCurves(session, background=False)
    for layer in (1, 4, 3):
        w.layer.value = layer
    layer_fig = front_end_figure(w.layer_fig)
    assert layer_fig["layout"]["title"]["text"].startswith("Layer 3:")
    assert len(layer_fig["data"]) == len(w.layer_fig.data) >= 2
    curve = front_end_figure(w.curve_fig)
    assert curve["layout"]["shapes"][0]["x0"] == 3  # the marker moved by a small relayout
    names = [t["name"] for t in curve["data"]]
    assert "chance" in names and "shuffled labels" in names  # the control
    assert curve == json.loads(w.curve_fig.figure.to_json())


def test_dataset_change_replaces_every_trace_in_the_state(session):
    w = ProbeCurves(session, background=False)
    before = front_end_figure(w.curve_fig)
    w.dataset.value = "truth"
    after = front_end_figure(w.curve_fig)
    assert after != before and "240 examples" in after["layout"]["title"]["text"]


def test_a_click_on_the_probe_curve_picks_that_layer(session):
    w = ProbeCurves(session, background=False)
    target = 1 if w.layer.value != 1 else 2
    message = {"content": {"data": {"method": "custom", "content": {
        "type": "click", "points": [{"x": target, "y": 0.5, "curve": 1, "index": target,
                                     "name": "probe accuracy"}]}}}, "buffers": []}
    w.curve_fig._handle_msg(message)  # what the comm delivers from the browser
    assert w.layer.value == target
    assert front_end_figure(w.layer_fig)["layout"]["title"]["text"].startswith(
        f"Layer {target}:")


def test_plotly_js_ships_once_per_kernel_from_the_plotly_package():
    first, second = Plot(), Plot(height=200)
    library = plotly_library()
    assert first.library is second.library is library
    shipped = files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
    assert library.source == shipped and b"plotly.js v" in shipped[:200]
    for widget in (Plot, ImageButtons):
        fetches = ("https://", "import(", "fetch(", "<script src")
        assert not any(f in widget._esm for f in fetches)  # no CDN: works offline


def test_draw_takes_the_container_width_and_keeps_the_figure():
    plot = Plot(height=250)
    plot.draw(go.Figure(go.Scatter(x=[0, 1], y=[2, 3]), layout={"width": 900}))
    spec = front_end_figure(plot)
    assert "width" not in spec["layout"] and spec["layout"]["height"] == 250
    assert spec["data"][0]["type"] == "scatter" and plot.data[0].y == (2, 3)


def test_steering_html_export_saves_both_texts_with_highlights(session, tmp_path):
    w = SteeringPanel(session, background=False)
    w.alpha.value = 1.0
    steer = w.result.steer
    text = w.export_html(tmp_path / "steering.html").read_text("utf-8")
    assert "<b>baseline</b>" in text and "<b>steered</b>" in text
    if any(w.result.changed):
        assert "<mark" in text
    assert "rose most" in text and f"alpha: {steer.alpha:.3g}" in text


def test_projection_html_export_includes_the_token_strip(session, tmp_path):
    w = ConceptProjection(session, background=False)
    text = w.export_html(tmp_path / "projection.html").read_text("utf-8")
    assert w.tokens.value and w.tokens.value in text
    assert text.count("Plotly.newPlot") == 2 and text.count("plotly.js v") == 1


def test_views_with_figures_offer_png_and_svg_made_in_the_browser(session):
    probes = ProbeCurves(session, background=False)
    steering = SteeringPanel(session, background=False)
    assert any(isinstance(c, ImageButtons) for c in probes.footer.children)
    assert not any(isinstance(c, ImageButtons) for c in steering.footer.children)
    assert "reprlab-view" in probes._dom_classes


def test_export_image_writes_png_and_svg_on_the_server(session, tmp_path):
    pytest.importorskip("kaleido")
    import shutil

    if not (shutil.which("chromium") or shutil.which("google-chrome")):
        pytest.skip("kaleido needs a Chrome or Chromium (apt-get install chromium)")
    w = ProbeCurves(session, background=False)
    pngs = w.export_image(tmp_path / "probes.png")
    assert [p.name for p in pngs] == ["probes-1.png", "probes-2.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    svg = w.export_image(tmp_path / "probes", format="svg")[1].read_text("utf-8")
    assert svg.lstrip().startswith("<svg") and "Layer" in svg
