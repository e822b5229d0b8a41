"""Real-browser end-to-end, as a class would use it: JupyterLab and Jupyter Notebook 7 serve the
quickstart, headless Chromium runs it, and the Explorer must render every tab at 1024 x 768
without horizontal clipping, survive a page reload and a second display, redraw on a slider,
wrap the token strip, export a PNG made in the browser, and stream non-Latin text readably.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (never a browser
download). Skipped when chromium is missing, unless REPRLAB_REQUIRE_BROWSER=1 (as in CI).
Screenshots go to artifacts/ (the Explorer's first tab also to docs/img/explorer.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dom_layout import (  # tests/browser
    CONTROL_FAULTS,
    FIGURE_FAULTS,
    FIGURES_OUTSIDE_PAGE,
    MISSING_TOOLTIPS,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PROJECTOR = {"width": 1024, "height": 768}
EXPLORER = ".jp-OutputArea-output:has(.widget-tab)"  # the first display of the Explorer
TABS = ("Probe curves", "Concept directions", "Circular features", "Steering", "Lens")
LONG_TEXT = ("The movie was wonderful at the start, with a warm story, clever dialogue and a "
             "cast that clearly enjoyed every scene, but the second half dragged on and on, the "
             "plot fell apart, the jokes went flat, and by the terrible ending most of the "
             "audience around me was checking the time and wishing they had stayed at home.")
# Extra cell appended to the copy of the quickstart: the same view displayed a second time.
SECOND_DISPLAY = ("from IPython.display import display\n"
                  "explorer = next(v for v in Out.values() if type(v).__name__ == 'Explorer')\n"
                  "display(explorer.view(0))")
UTF8_NOTEBOOK = """\
import torch
from reprlab import Direction, Session
from reprlab.widgets import SteeringPanel

s = Session.load()
torch.manual_seed(0)
direction = Direction("random", torch.randn(s.width), 15, "a random direction")
panel = SteeringPanel(s, direction)
panel.max_tokens.value = 12
panel"""

# Each visible figure of a view: its number of traces, 0 when it is drawn without height
# (hidden tabs are left out).
PLOT_DATA = """(root) => [...(root || document).querySelectorAll('.reprlab-view .js-plotly-plot')]
    .filter((e) => e.offsetParent !== null)
    .map((e) => e.offsetHeight > 100 ? (e.data || []).length : 0)"""
# Elements of the visible views wider than their box (clipped or scrolled horizontally).
CLIPPED = """() => [...document.querySelectorAll(`.reprlab-view, .reprlab-view .widget-box,
    .reprlab-view .reprlab-plot, .jp-OutputArea-output`)]
    .filter((e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map((e) => `${e.className.slice(-40)} in "${(e.closest('.reprlab-view') || e).innerText
        .slice(0, 40)}": ${e.scrollWidth} > ${e.clientWidth}`)"""

# Page position of the probe curve's point at a layer (the first visible per-layer curve drawn
# with markers).
# Page position of the lens grid's cell (column, layer), scrolled to the middle of the window,
# and the top token the figure labels it with (its hover data), in the visible view.
LENS_CELL = """([column, layer]) => {
    const gd = [...document.querySelectorAll('.reprlab-view .js-plotly-plot')]
        .find((e) => e.offsetParent !== null);
    const heat = gd._fullData.find((t) => t.type === 'heatmap');
    const L = gd._fullLayout;
    const y = () => gd.getBoundingClientRect().top + L._size.t + L.yaxis.l2p(layer);
    let box = gd.parentElement;  // the notebook's scrolling panel
    while (box && !(box.scrollHeight > box.clientHeight + 1 &&
                    /(auto|scroll)/.test(getComputedStyle(box).overflowY))) {
        box = box.parentElement;
    }
    if (box) box.scrollTop += y() - window.innerHeight / 2;
    const row = Array.from(heat.y).indexOf(layer);
    return {x: gd.getBoundingClientRect().left + L._size.l + L.xaxis.l2p(column), y: y(),
            token: heat.customdata[row][column][0], columns: heat.x.length,
            ticks: [...gd.querySelectorAll('.xtick text')].map((e) => e.textContent)};
}"""

CURVE_POINT = """(layer) => {
    const gd = [...document.querySelectorAll('.reprlab-view .js-plotly-plot')]
        .find((e) => e.offsetParent !== null);
    const trace = gd._fullData.find((t) => (t.mode || '').includes('markers') && t.x.length > 5);
    const i = Array.from(trace.x).indexOf(layer);
    const L = gd._fullLayout, box = gd.getBoundingClientRect();
    return {x: box.left + L._size.l + L.xaxis.l2p(trace.x[i]),
            y: box.top + L._size.t + L.yaxis.l2p(trace.y[i])};
}"""


def _require_browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("REPRLAB_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One Jupyter server (JupyterLab at /lab, Notebook 7 at /notebooks) on copies of the
    notebooks, so the repository's copies are never dirtied."""
    _require_browser()
    import nbformat

    work = tmp_path_factory.mktemp("lab")
    quickstart = nbformat.read(ROOT / "notebooks" / "00_quickstart.ipynb", as_version=4)
    nbformat.write(quickstart, work / "nb7_quickstart.ipynb")
    quickstart.cells.append(nbformat.v4.new_code_cell(SECOND_DISPLAY))
    nbformat.write(quickstart, work / "00_quickstart.ipynb")
    _notebook(work / "utf8.ipynb", [UTF8_NOTEBOOK])
    port = _free_port()
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={work}",
         f"--LabApp.workspaces_dir={work / 'workspaces'}"],  # no tabs left from earlier runs
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail(f"Jupyter did not start; log: {(work / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def page(server):
    """A 1024 x 768 page (a projector) that records console errors; kernels are shut down
    afterwards so the next test has the memory."""
    sync_api = _require_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=PROJECTOR, accept_downloads=True)
        page.console_errors = []
        page.on("console", lambda m: page.console_errors.append(m.text)
                if m.type == "error" or "Failed to initialize" in m.text else None)
        try:
            yield page
        finally:
            browser.close()
            _shutdown_kernels(server)


def _shutdown_kernels(url: str) -> None:
    sessions = json.load(urllib.request.urlopen(f"{url}/api/sessions", timeout=10))
    for session in sessions:
        request = urllib.request.Request(f"{url}/api/sessions/{session['id']}", method="DELETE")
        urllib.request.urlopen(request, timeout=30)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_timeout(1500)
    if page.locator(".jp-Dialog").count():
        page.click(".jp-Dialog .jp-mod-accept")
    toast = page.locator(".Toastify button:has-text('No')")  # the "Jupyter news" question
    if toast.count():
        toast.first.click()


def _run_all(page) -> None:
    page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=15_000)
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=15_000)


def _wait_for_plots(page, count: int, timeout: float = 240_000) -> list[int]:
    """Wait until ``count`` visible plots all have traces; return their trace counts."""
    page.wait_for_function(f"(({PLOT_DATA})()).filter((n) => n > 0).length >= {count}",
                           timeout=timeout)
    return page.evaluate(PLOT_DATA)


def _save_and_reload(page) -> None:
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)
    page.reload()
    page.wait_for_selector(".jp-Notebook", timeout=90_000)


def _layer_title(page) -> str:
    titles = page.locator(".reprlab-view .js-plotly-plot .gtitle").all_text_contents()
    return next((t for t in titles if t.startswith("Layer ")), "")


def _move_layer_slider(page, target: str) -> None:
    readout = page.locator(".reprlab-view .widget-readout").first
    readout.click()
    readout.fill(target)
    readout.press("Enter")
    page.wait_for_function(
        "t => [...document.querySelectorAll('.reprlab-view .js-plotly-plot .gtitle')]"
        ".some(e => e.textContent.startsWith('Layer ' + t + ':'))", arg=target, timeout=60_000)


def _select_tab(page, title: str):
    page.locator(".widget-tab .lm-TabBar-tab", has_text=title).first.click()
    view = page.locator(".widget-tab .reprlab-view:visible").first
    view.wait_for(timeout=60_000)
    return view


def _screenshot(page, name: str) -> Path:
    """What a projector shows: the Explorer's tabs scrolled to the top of the notebook."""
    page.mouse.move(2, 300)  # no hover: plotly's tool bar hides
    page.evaluate("document.querySelector('.widget-tab').scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def _explorer_faults(page, front_end: str, slug: str) -> list[str]:
    """Layout faults of the Explorer as a browser shows it now: figure texts cut or
    overlapping, control labels cut, controls overlapping, controls without a tooltip."""
    root = EXPLORER
    faults = page.evaluate(FIGURE_FAULTS, root) + page.evaluate(CONTROL_FAULTS, root) + \
        page.evaluate(MISSING_TOOLTIPS, root)
    return [f"{front_end} {slug}: {f}" for f in dict.fromkeys(faults)]


def _wait_for_tab(page, title: str) -> None:
    if title == "Lens":
        page.wait_for_function(
            "[...document.querySelectorAll('.reprlab-view')].some("
            "v => v.offsetParent && v.innerText.includes('lens,') && "
            "v.querySelector('.js-plotly-plot .heatmaplayer'))", timeout=240_000)
    elif title == "Steering":
        page.wait_for_function(
            "[...document.querySelectorAll('.reprlab-view')].some("
            "v => v.offsetParent && /\\d+ of \\d+ tokens differ/.test(v.innerText))",
            timeout=240_000)
    else:
        page.wait_for_function(f"(({PLOT_DATA})(document.querySelector("
                               "'.widget-tab'))).filter(n => n > 0).length >= 2",
                               timeout=240_000)
    page.wait_for_timeout(300)  # the last relayout (a resize observer) settles


def _export_html_faults(page, view, front_end: str, slug: str) -> list[str]:
    """Click the view's HTML export, open the file it saved at 1024 x 768 and measure it:
    every figure inside the page, no figure text cut or overlapping."""
    view.locator("button:text-is('HTML')").first.click()
    status = view.locator(":text-matches('Saved /.*\\.html')").first
    status.wait_for(timeout=60_000)
    path = Path(re.search(r"Saved (/\S+\.html)", status.inner_text()).group(1))
    shutil.copy(path, ARTIFACTS / f"{front_end.lower().replace(' ', '')}-{slug}.html")
    exported = page.context.browser.new_page(viewport=PROJECTOR)
    try:
        exported.goto(path.as_uri())
        exported.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')]"
                                   ".every(gd => gd._fullLayout)", timeout=30_000)
        exported.wait_for_timeout(300)
        faults = exported.evaluate(FIGURES_OUTSIDE_PAGE) + exported.evaluate(FIGURE_FAULTS, "")
    finally:
        exported.close()
    return [f"{front_end} {slug} exported HTML: {f}" for f in faults]


def _measure_every_tab(page, front_end: str, shots: Path | None) -> list[str]:
    """Each tab of the Explorer: drawn, laid out without faults, its export too; a screenshot
    of each (into ``shots`` when given)."""
    faults = []
    for title in TABS:
        view = _select_tab(page, title)
        _wait_for_tab(page, title)
        slug = title.lower().replace(" ", "-")
        faults += _explorer_faults(page, front_end, slug)
        shot = _screenshot(page, f"{front_end.lower().replace(' ', '')}-{slug}.png")
        if shots is not None:
            shutil.copy(shot, shots / f"explorer-{slug}.png")
        faults += _export_html_faults(page, view, front_end, slug)
    return faults


# Where a view's inline notice is, how far from a control (px, vertical gap between the boxes),
# and how faded its outputs are: what a student sees while work runs or after an error.
NOTICE_STATE = """(control) => {
    const view = [...document.querySelectorAll('.widget-tab .reprlab-view')]
        .find((v) => v.offsetParent);
    const notice = view.querySelector('.reprlab-notice');
    const target = view.querySelector(control);
    const a = notice.getBoundingClientRect(), b = target.getBoundingClientRect();
    const outputs = [...view.querySelectorAll('.reprlab-output')].filter((e) => e.offsetParent);
    const badge = outputs.length ? getComputedStyle(outputs[0], '::after').content : '';
    return {text: notice.innerText, gap: Math.max(a.top - b.bottom, b.top - a.bottom, 0),
            busy: view.classList.contains('reprlab-busy'),
            stale: view.classList.contains('reprlab-stale'), badge,
            faded: outputs.length > 0 && outputs.every((e) => [...e.children].every(
                (c) => parseFloat(getComputedStyle(c).opacity) < 0.6))};
}"""


def _busy_and_error_show_beside_their_controls(page) -> None:
    """A new data set dims the figures with "computing ..." right by the dropdown; an empty
    steering prompt says why right under the prompt and marks the old text as not updated."""
    view = _select_tab(page, "Probe curves")
    view.locator("select").first.select_option("truth")
    page.wait_for_function(f"(({NOTICE_STATE})('select')).busy", timeout=30_000, polling=50)
    page.wait_for_timeout(400)  # the dimming fades in (a 0.2 s transition)
    state = page.evaluate(NOTICE_STATE, "select")
    assert "computing" in state["text"] and state["gap"] < 120 and state["faded"], state
    assert "computing" in state["badge"], state
    page.wait_for_function(f"!(({NOTICE_STATE})('select')).busy", timeout=240_000)
    assert not page.evaluate(NOTICE_STATE, "select")["faded"]

    view = _select_tab(page, "Steering")
    prompt = view.locator("input[type='text']").first
    prompt.fill("")
    prompt.press("Enter")
    page.wait_for_function(f"(({NOTICE_STATE})(\"input[type='text']\")).stale",
                           timeout=30_000)
    page.wait_for_timeout(400)
    state = page.evaluate(NOTICE_STATE, "input[type='text']")
    assert "prompt" in state["text"].lower() and state["gap"] < 120 and state["faded"], state
    assert "not updated" in state["badge"], state
    prompt.fill("I think the movie was")
    prompt.press("Enter")
    page.wait_for_function(f"!(({NOTICE_STATE})(\"input[type='text']\")).stale",
                           timeout=180_000)


def _lens_prompt_and_cell(page) -> list[str]:
    """Type a prompt in the Lens tab, click a grid cell, see that cell's top-10 table headed by
    the token the cell shows; the layout of the new grid and table is measured too."""
    view = _select_tab(page, "Lens")
    prompt = view.locator("input[type='text']").first
    prompt.fill("The Eiffel Tower is in the city of")
    prompt.press("Enter")
    page.wait_for_function(
        "[...document.querySelectorAll('.reprlab-view')].some(v => v.offsetParent && "
        "v.innerText.includes(\"after ' of'\"))", timeout=120_000)
    page.wait_for_timeout(300)
    cell = page.evaluate(LENS_CELL, [3, 20])
    assert cell["columns"] == 9 and any("city" in t for t in cell["ticks"]), cell
    page.mouse.click(cell["x"], cell["y"])
    page.wait_for_function(
        "[...document.querySelectorAll('.reprlab-lens-cell')].some(e => e.offsetParent && "
        "e.innerText.startsWith('Layer 20, after'))", timeout=30_000)
    table = page.evaluate("""() => { const e = [...document.querySelectorAll(
        '.reprlab-lens-cell')].find((e) => e.offsetParent);
        return {head: e.querySelector('b').innerText,
                rows: [...e.querySelectorAll('tr')].slice(1).map((r) => r.innerText)}; }""")
    assert len(table["rows"]) == 10, table
    assert table["rows"][0].split("\t")[1] == cell["token"], (table, cell)
    assert "Tower" in table["head"], table  # column 3 of the prompt: " Tower"
    _screenshot(page, "jupyterlab-lens-cell.png")
    return [f"JupyterLab lens after a click: {f}" for f in _explorer_faults(page, "", "")]


def _month_labels_do_not_collide(page) -> list[str]:
    """Twelve month labels on the 2-D map of a narrow figure: none overlaps another text."""
    view = _select_tab(page, "Circular features")
    view.locator("select").first.select_option("months")
    page.wait_for_function(
        "[...document.querySelectorAll('.reprlab-view .js-plotly-plot .gtitle')]"
        ".some(e => e.offsetParent !== null && e.textContent.startsWith('months at layer'))",
        timeout=240_000)
    page.wait_for_timeout(300)
    labels = page.evaluate("""() => [...document.querySelectorAll(
        '.widget-tab .reprlab-view .js-plotly-plot .annotation-text')]
        .filter(e => e.getBoundingClientRect().width > 0).map(e => e.textContent)""")
    assert len(labels) == 12, labels  # one label per month mean, placed as annotations
    return [f"JupyterLab months map: {f}" for f in page.evaluate(FIGURE_FAULTS, EXPLORER)]


def test_quickstart_in_jupyterlab_survives_reload_and_every_tab_fits_a_projector(server, page):
    _open(page, f"{server}/lab/tree/00_quickstart.ipynb")
    # The file browser stays open, as `make lab` opens it: the notebook gets what is left.
    assert page.locator(".jp-DirListing:visible").count(), "the file browser is not open"
    _run_all(page)
    _wait_for_plots(page, 4)  # the Explorer's two figures and their second display
    page.wait_for_function(
        "[...document.querySelectorAll('.js-plotly-plot .gtitle')]"
        ".some(t => t.textContent.startsWith('Layer '))", timeout=120_000)
    assert page.locator("text=Error displaying widget").count() == 0
    page.wait_for_function(  # the second display of the probe view draws its figures too
        f"(({PLOT_DATA})([...document.querySelectorAll('.jp-Cell')].find("
        "c => c.innerText.includes('explorer.view(0)')))).filter(n => n > 0).length == 2",
        timeout=120_000)

    # every tab at 1024 x 768 with the file browser open: measured from DOM boxes, exported,
    # screenshots for the docs
    (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
    faults = _measure_every_tab(page, "JupyterLab", ROOT / "docs" / "img")
    shutil.copy(ROOT / "docs" / "img" / "explorer-probe-curves.png",
                ROOT / "docs" / "img" / "explorer.png")

    faults += _month_labels_do_not_collide(page)
    faults += _lens_prompt_and_cell(page)
    _busy_and_error_show_beside_their_controls(page)

    # PNG made by plotly.js in the browser, downloaded by the browser
    _select_tab(page, "Probe curves")
    with page.expect_download(timeout=60_000) as download:
        page.locator(".reprlab-view:visible button:text-is('PNG')").first.click()
    download.value.save_as(ARTIFACTS / "export-probe-curves.png")
    png = (ARTIFACTS / "export-probe-curves.png").read_bytes()
    assert download.value.suggested_filename.endswith(".png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with page.expect_download(timeout=60_000) as download:
        page.locator(".reprlab-view:visible button:text-is('SVG')").first.click()
    download.value.save_as(ARTIFACTS / "export-probe-curves.svg")
    svg = (ARTIFACTS / "export-probe-curves.svg").read_text("utf-8")
    assert svg.startswith("<svg") and svg.count("<svg") == 3 and "Layer" in svg

    # reload with the kernel running: every figure is drawn again from the widget state
    before = _layer_title(page)
    _save_and_reload(page)
    counts = _wait_for_plots(page, 4, timeout=90_000)
    assert all(n > 0 for n in counts), f"blank plots after reload: {counts}"
    assert _layer_title(page) == before
    target = "3" if not before.startswith("Layer 3:") else "20"
    _move_layer_slider(page, target)  # the reloaded page still redraws on a slider
    assert _layer_title(page).startswith(f"Layer {target}:")
    _screenshot(page, "explorer-after-reload.png")
    point = page.evaluate(CURVE_POINT, 10)
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])  # a click on the curve picks that layer
    page.wait_for_function(
        "[...document.querySelectorAll('.reprlab-view .js-plotly-plot .gtitle')]"
        ".some(e => e.textContent.startsWith('Layer 10:'))", timeout=60_000)
    assert page.locator("text=Error displaying widget").count() == 0
    failures = [m for m in page.console_errors if "anywidget" in m or "reprlab" in m]
    assert failures == [], failures

    # a long text's token strip wraps inside the view
    view = _select_tab(page, "Concept directions")
    box = view.locator("textarea:visible").last
    box.fill(LONG_TEXT)
    box.press("Tab")  # the text box sends its value on blur
    page.wait_for_function("[...document.querySelectorAll('.reprlab-tokens')].some("
                           "e => e.offsetParent && e.innerText.includes('stayed'))",
                           timeout=60_000)
    strip = page.evaluate("""() => { const e = [...document.querySelectorAll(
        '.reprlab-tokens')].find(e => e.offsetParent);
        return {height: e.clientHeight, line: parseFloat(getComputedStyle(e).lineHeight),
                scroll: e.scrollWidth, width: e.clientWidth}; }""")
    assert strip["height"] > 2.5 * strip["line"], f"token strip does not wrap: {strip}"
    assert strip["scroll"] <= strip["width"] + 1, f"token strip clipped: {strip}"
    assert page.evaluate(CLIPPED) == []
    _screenshot(page, "explorer-long-text.png")
    assert faults == [], "layout faults at 1024 x 768:\n" + "\n".join(faults)


def test_quickstart_in_notebook7_draws_the_explorer_and_survives_reload(server, page):
    _open(page, f"{server}/notebooks/nb7_quickstart.ipynb")
    _run_all(page)
    _wait_for_plots(page, 2)
    page.wait_for_function(
        "[...document.querySelectorAll('.js-plotly-plot .gtitle')]"
        ".some(t => t.textContent.startsWith('Layer '))", timeout=120_000)
    assert page.locator("text=Error displaying widget").count() == 0
    faults = _measure_every_tab(page, "Notebook 7", None)
    assert faults == [], "\n".join(faults)
    _select_tab(page, "Probe curves")
    _save_and_reload(page)
    counts = _wait_for_plots(page, 2, timeout=90_000)
    assert all(n > 0 for n in counts), f"blank plots after reload: {counts}"
    failures = [m for m in page.console_errors if "anywidget" in m or "reprlab" in m]
    assert failures == [], failures


def test_a_japanese_prompt_streams_readable_characters(server, page):
    _open(page, f"{server}/lab/tree/utf8.ipynb")
    _run_all(page)
    view = page.locator(".reprlab-view").first
    view.wait_for(timeout=120_000)
    done = ("() => /\\d+ of \\d+ tokens differ/"  # the status line, not a help text
            ".test(document.querySelector('.reprlab-view').innerText)")
    page.wait_for_function(done, timeout=180_000)  # the default prompt's run
    prompt = view.locator("input[type='text']").first
    prompt.fill("映画は")
    prompt.press("Enter")
    page.wait_for_function(f"() => !({done})()", timeout=30_000)  # the new run started
    page.wait_for_function(done, timeout=180_000)
    text = view.inner_text()
    # A character that the token limit cuts in two may end a text as one U+FFFD; anywhere else
    # (mid-text, the first-token table) it means a character was lost.
    lost = [line for line in text.splitlines() if "\ufffd" in line.removesuffix("\ufffd")]
    assert lost == [], f"replacement characters in the steering panel: {text!r}"
