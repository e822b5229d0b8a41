"""Real-browser end-to-end: JupyterLab serves the quickstart, headless Chromium runs it, the
Explorer renders, and moving a layer slider changes a plot.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (never a browser
download). Skipped when chromium is missing, unless REPRLAB_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _require_browser()
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work)  # never dirty the repo copy
    port = _free_port()
    log = (work / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root",
         f"--ServerApp.root_dir={work}"],
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
        pytest.fail(f"JupyterLab did not start; log: {(work / 'lab.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _layer_plot_title(page) -> str:
    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
    return next((t for t in titles if t.startswith("Layer ")), "")


def test_quickstart_renders_the_explorer_and_a_slider_changes_the_plot(lab):
    sync_api = _require_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab}/lab/tree/00_quickstart.ipynb")
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_timeout(1500)
            if page.locator(".jp-Dialog").count():
                page.click(".jp-Dialog .jp-mod-accept")
            page.click("text=Run", timeout=15_000)
            page.click("text=Run All Cells", timeout=15_000)
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=240_000)
            page.wait_for_function(
                "[...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                ".some(t => t.textContent.startsWith('Layer '))", timeout=120_000)
            assert page.locator("text=Error displaying widget").count() == 0
            assert page.locator(".jp-OutputArea-output .widget-tab").count() >= 1
            before = _layer_plot_title(page)
            page.screenshot(path=str(ARTIFACTS / "browser-explorer.png"))

            readout = page.locator(".widget-readout").first
            target = "3" if not before.startswith("Layer 3:") else "20"
            readout.click()
            readout.fill(target)
            readout.press("Enter")
            page.wait_for_function(
                "t => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                ".some(e => e.textContent.startsWith('Layer ' + t + ':'))", arg=target,
                timeout=30_000)
            after = _layer_plot_title(page)
            page.screenshot(path=str(ARTIFACTS / "browser-after-slider.png"))
            assert after != before and after.startswith(f"Layer {target}:")
            assert page.locator("text=Error displaying widget").count() == 0
        finally:
            browser.close()
