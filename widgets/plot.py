"""Plot: the one figure widget every view uses; its synced state is the whole plotly figure.

A page reload, a second ``display`` or a notebook reopened while the kernel runs builds a new
front-end view from the widget state alone, so that state must always hold the current figure:
``Plot.draw`` sends the full figure spec (JSON), never in-place trace edits. The browser draws it
with the plotly.js that the plotly package ships, sent once per kernel as the binary state of one
shared :class:`PlotlyLibrary` widget (offline, no CDN) and evaluated once per page. Clicks on
points come back to Python (``on_click``); :class:`ImageButtons` downloads the figures of a view
as PNG or SVG in the browser (``Plotly.toImage``), with no kernel round trip.

>>> plot = Plot(height=300)
>>> plot.draw(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])))
>>> plot.on_click(lambda point: print(point["x"]))      # doctest: +SKIP
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

import anywidget
import plotly.graph_objects as go
import traitlets
from ipywidgets import widget_serialization

_LOADER = r"""
const G = globalThis;
// plotly.js once per page: the bytes come from the PlotlyLibrary widget's state.
async function loadPlotly(model) {
  if (G.__reprlabPlotly) return G.__reprlabPlotly;
  const ref = model.get("library");
  const id = typeof ref === "string" ? ref.replace(/^IPY_MODEL_/, "") : null;
  if (!id) throw new Error("reprlab: no plotly.js library widget");
  G.__reprlabPlotly = libraryModel(model, id).then((lib) => {
    const source = new TextDecoder().decode(lib.get("source"));
    const module = { exports: {} };
    new Function("module", "exports", source)(module, module.exports);
    return module.exports;
  });
  G.__reprlabPlotly.catch(() => { G.__reprlabPlotly = null; });
  return G.__reprlabPlotly;
}
async function libraryModel(model, id) {
  // After a reload the models are restored together: wait until the library's is known.
  for (let attempt = 0; ; attempt++) {
    let lib = null;
    try {
      lib = await model.widget_manager.get_model(id);
    } catch (err) {
      if (attempt >= 100) throw err;
    }
    if (lib) return lib;
    if (attempt >= 100) throw new Error("reprlab: the plotly.js widget never arrived");
    await new Promise((ok) => setTimeout(ok, 100));
  }
}
const REGISTRY = (G.__reprlabFigures ??= new Map());  // figure key -> set of live plot divs
"""

_PLOT_ESM = _LOADER + r"""
const CONFIG = { displaylogo: false,  // the width follows the container: ResizeObserver below
                 modeBarButtonsToRemove: ["select2d", "lasso2d"] };

function render({ model, el }) {
  el.classList.add("reprlab-plot");
  const gd = document.createElement("div");
  gd.className = "reprlab-plot-area";
  el.appendChild(gd);
  const key = model.get("key");
  if (!REGISTRY.has(key)) REGISTRY.set(key, new Set());
  REGISTRY.get(key).add(gd);
  let alive = true, queued = false, chain = Promise.resolve(), Plotly = null;
  const containerWidth = () => Math.floor(el.getBoundingClientRect().width);

  async function draw() {
    queued = false;
    Plotly = await loadPlotly(model);
    if (!alive) return;
    const fig = JSON.parse(model.get("spec") || "{}");
    const layout = fig.layout || {};
    const width = containerWidth();  // plotly would keep the width of its first draw
    if (layout.width == null && width > 0) layout.width = width;
    await Plotly.react(gd, fig.data || [], layout, CONFIG);
    if (!gd.__reprlabClicks) {
      gd.__reprlabClicks = true;
      gd.on("plotly_click", (event) => model.send({ type: "click", points: event.points.map(
        (p) => ({ x: p.x, y: p.y, curve: p.curveNumber, index: p.pointIndex ?? p.pointNumber,
                  name: p.data && p.data.name })) }));
    }
  }
  function schedule() {  // draws never overlap; a burst of updates draws only the last spec
    if (queued) return;
    queued = true;
    chain = chain.then(draw).catch((err) => {
      console.error("reprlab plot", err);
      gd.textContent = `could not draw the figure: ${err}`;
    });
  }
  model.on("change:spec", schedule);
  schedule();
  const resize = new ResizeObserver(() => {  // follow the container (a tab shown, a resize)
    chain = chain.then(() => {
      const width = containerWidth();
      if (alive && Plotly && gd._fullLayout && width > 0 &&
          Math.abs(gd._fullLayout.width - width) > 1) return Plotly.relayout(gd, { width });
    }).catch((err) => console.error("reprlab plot", err));
  });
  resize.observe(el);
  return () => {
    alive = false;
    model.off("change:spec", schedule);
    resize.disconnect();
    REGISTRY.get(key)?.delete(gd);
    if (Plotly) Plotly.purge(gd);
  };
}
export default { render };
"""

_BUTTONS_ESM = _LOADER + r"""
// What an image holds: the view's figures and its HTML parts that carry meaning (the token
// strip and its colour legend), in page order, painted where they are on the page.
const HTML_PARTS = ".reprlab-tokens, .reprlab-token-legend";

function liveDiv(key, root) {  // the copy of the figure in this display of the view
  const divs = [...(REGISTRY.get(key) || [])].filter((d) => d.isConnected && d.data);
  return divs.find((d) => root && root.contains(d)) || divs[0];
}

function partsOf(root, keys) {
  const plots = keys.length ? keys.map((k) => liveDiv(k, root)).filter(Boolean)
    : [...(root ? root.querySelectorAll(".reprlab-plot-area") : [])].filter((d) => d.data);
  const html = keys.length || !root ? []
    : [...root.querySelectorAll(HTML_PARTS)].filter((e) => e.getClientRects().length);
  const parts = [...plots.map((el) => ({ el, plot: true })),
                 ...html.map((el) => ({ el, plot: false }))];
  return parts.sort((a, b) =>
    (a.el.compareDocumentPosition(b.el) & Node.DOCUMENT_POSITION_FOLLOWING) ? -1 : 1);
}

function frameOf(parts) {
  const boxes = parts.map((p) => p.el.getBoundingClientRect());
  const left = Math.min(...boxes.map((b) => b.left)), top = Math.min(...boxes.map((b) => b.top));
  return { boxes, left, top, width: Math.ceil(Math.max(...boxes.map((b) => b.right)) - left),
           height: Math.ceil(Math.max(...boxes.map((b) => b.bottom)) - top) };
}

const painted = (c) => c && c !== "transparent" && !/^rgba\(.*,\s*0\)$/.test(c);

function htmlPieces(el) {  // backgrounds, outlines and words of an HTML part, in page pixels
  const out = [];
  for (const node of [el, ...el.querySelectorAll("*")]) {
    const style = getComputedStyle(node);
    const rects = [...node.getClientRects()];
    if (painted(style.backgroundColor)) {
      for (const r of rects) out.push({ rect: r, fill: style.backgroundColor });
    }
    if (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0) {
      for (const r of rects) out.push({ rect: r, stroke: style.outlineColor,
                                        dash: style.outlineStyle === "dashed" });
    }
  }
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const style = getComputedStyle(t.parentElement);
    const words = /\S+/g;
    for (let m = words.exec(t.textContent); m; m = words.exec(t.textContent)) {
      const range = document.createRange();
      range.setStart(t, m.index);
      range.setEnd(t, m.index + m[0].length);
      const r = range.getClientRects()[0];
      if (r) out.push({ rect: r, text: m[0], color: style.color, weight: style.fontWeight,
                        size: parseFloat(style.fontSize), family: style.fontFamily });
    }
  }
  return out;
}

function paintHtml(ctx, el, left, top, scale) {
  for (const p of htmlPieces(el)) {
    const x = (p.rect.left - left) * scale, y = (p.rect.top - top) * scale;
    const w = p.rect.width * scale, h = p.rect.height * scale;
    if (p.fill) {
      ctx.fillStyle = p.fill;
      ctx.fillRect(x, y, w, h);
    } else if (p.stroke) {
      ctx.strokeStyle = p.stroke;
      ctx.lineWidth = scale;
      ctx.setLineDash(p.dash ? [3 * scale, 2 * scale] : []);
      ctx.strokeRect(x, y, w, h);
      ctx.setLineDash([]);
    } else {
      ctx.fillStyle = p.color;
      ctx.font = `${p.weight} ${p.size * scale}px ${p.family}`;
      ctx.textBaseline = "middle";
      ctx.fillText(p.text, x, y + h / 2);
    }
  }
}

const xml = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;")
  .replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function svgHtml(el, left, top) {
  return htmlPieces(el).map((p) => {
    const x = p.rect.left - left, y = p.rect.top - top, w = p.rect.width, h = p.rect.height;
    if (p.fill) return `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="${p.fill}"/>`;
    if (p.stroke) {
      return `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" ` +
        `stroke="${p.stroke}"${p.dash ? ' stroke-dasharray="3 2"' : ""}/>`;
    }
    return `<text x="${x}" y="${y + h / 2}" dominant-baseline="central" ` +
      `font-family="${xml(p.family)}" font-size="${p.size}" font-weight="${p.weight}" ` +
      `fill="${p.color}" xml:space="preserve">${xml(p.text)}</text>`;
  }).join("");
}

async function pngOf(Plotly, parts, scale) {
  const f = frameOf(parts);
  const canvas = document.createElement("canvas");
  canvas.width = Math.ceil(f.width * scale);
  canvas.height = Math.ceil(f.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const [i, part] of parts.entries()) {
    const box = f.boxes[i];
    if (!part.plot) {
      paintHtml(ctx, part.el, f.left, f.top, scale);
      continue;
    }
    const url = await Plotly.toImage(part.el, { format: "png", width: box.width,
                                                height: box.height, scale });
    const img = new Image();
    await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; img.src = url; });
    ctx.drawImage(img, (box.left - f.left) * scale, (box.top - f.top) * scale);
  }
  return new Promise((ok) => canvas.toBlob(ok, "image/png"));
}

async function svgOf(Plotly, parts) {
  const f = frameOf(parts);
  const out = [];
  for (const [i, part] of parts.entries()) {
    const box = f.boxes[i];
    if (!part.plot) {
      out.push(svgHtml(part.el, f.left, f.top));
      continue;
    }
    const url = await Plotly.toImage(part.el, { format: "svg", width: box.width,
                                                height: box.height });
    const svg = decodeURIComponent(url.slice(url.indexOf(",") + 1));
    out.push(svg.replace(/^<svg /, `<svg x="${box.left - f.left}" y="${box.top - f.top}" `));
  }
  const text = `<svg xmlns="http://www.w3.org/2000/svg" ` +
    `xmlns:xlink="http://www.w3.org/1999/xlink" width="${f.width}" height="${f.height}" ` +
    `viewBox="0 0 ${f.width} ${f.height}"><rect width="100%" height="100%" fill="white"/>` +
    `${out.join("")}</svg>`;
  return new Blob([text], { type: "image/svg+xml" });
}
G.__reprlabImage = { partsOf, pngOf, svgOf };  // for tests of a static page

function render({ model, el }) {
  el.classList.add("reprlab-image-buttons");
  const note = document.createElement("span");
  note.className = "reprlab-image-note";
  for (const format of ["png", "svg"]) {
    const button = document.createElement("button");
    button.className = "jupyter-widgets jupyter-button widget-button";
    button.textContent = format.toUpperCase();
    button.title = `download the figures (and token strips) as ${format.toUpperCase()} ` +
      "(made in the browser)";
    button.style.width = "64px";
    button.addEventListener("click", async () => {
      note.textContent = "";
      try {
        const root = el.closest(".reprlab-view");
        const parts = partsOf(root, model.get("figures"));
        if (!parts.some((p) => p.plot)) throw new Error("nothing drawn yet: wait for the figures");
        const Plotly = await loadPlotly(model);
        const blob = format === "png" ? await pngOf(Plotly, parts, 2)
          : await svgOf(Plotly, parts);
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = `${model.get("filename")}.${format}`;
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      } catch (err) {
        note.textContent = `${format.toUpperCase()} export failed: ${err.message || err}`;
      }
    });
    el.appendChild(button);
  }
  el.appendChild(note);
}
export default { render };
"""

_CSS = """
.reprlab-plot { min-width: 0; }
.reprlab-plot-area { width: 100%; }
.reprlab-image-buttons { display: flex; align-items: center; gap: 2px; }
.reprlab-image-note { color: #b00020; margin-left: 6px; }
"""


class PlotlyLibrary(anywidget.AnyWidget):
    """The plotly.js bundle of the installed plotly package, as widget state (one per kernel)."""

    _esm = "export default {};"
    source = traitlets.Bytes().tag(sync=True)


_library: PlotlyLibrary | None = None


def plotly_library() -> PlotlyLibrary:
    """The kernel's one :class:`PlotlyLibrary` (re-made if it was closed)."""
    global _library
    if _library is None or _library.comm is None:
        source = files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
        _library = PlotlyLibrary(source=source)
    return _library


class Plot(anywidget.AnyWidget):
    """A plotly figure whose synced ``spec`` is the whole current figure as JSON.

    ``figure`` is the :class:`plotly.graph_objects.Figure` drawn last (``data`` reads its
    traces). The plot takes the width of its container; ``height`` is in pixels.
    """

    _esm = _PLOT_ESM
    _css = _CSS
    spec = traitlets.Unicode("{}").tag(sync=True)
    key = traitlets.Unicode().tag(sync=True)
    library = traitlets.Instance(PlotlyLibrary).tag(sync=True, **widget_serialization)

    def __init__(self, height: int = 400, **kwargs):
        kwargs.setdefault("layout", {"flex": "1 1 0px", "min_width": "0"})
        super().__init__(key=uuid.uuid4().hex, library=plotly_library(), **kwargs)
        self.height = height
        self._click_handlers: list[Callable[[dict], Any]] = []
        self._lock = threading.Lock()  # views draw from background threads and slider handlers
        self.on_msg(self._on_message)
        self.draw(go.Figure(layout={
            "template": "plotly_white", "xaxis": {"visible": False},
            "yaxis": {"visible": False}, "annotations": [{
                "text": "waiting for the first result…", "showarrow": False,
                "font": {"color": "#777", "size": 14}}]}))

    @property
    def data(self) -> tuple:
        """The traces drawn now (``figure.layout`` is the layout; ``layout`` stays the
        widget's own CSS layout)."""
        return self.figure.data

    def draw(self, figure: go.Figure | dict) -> None:
        """Show ``figure`` (replacing the previous one) in every display of this widget."""
        figure = figure if isinstance(figure, go.Figure) else go.Figure(figure)
        figure.layout.width = None  # the container decides the width
        if figure.layout.height is None:
            figure.layout.height = self.height
        with self._lock:
            self.figure = figure
            self.spec = figure.to_json()

    def relayout(self, **layout) -> None:
        """Change layout properties (``shapes=...``) of the current figure and redraw."""
        with self._lock:
            self.figure.update_layout(**layout)
            self.spec = self.figure.to_json()

    def on_click(self, callback: Callable[[dict], Any]) -> None:
        """Call ``callback(point)`` on a click; ``point`` has ``x``, ``y``, ``curve`` (trace
        index), ``index`` (point index) and ``name`` (trace name)."""
        self._click_handlers.append(callback)

    def _on_message(self, _widget, content: dict, _buffers) -> None:
        if content.get("type") != "click":
            return
        for point in content.get("points", [])[:1]:
            for callback in self._click_handlers:
                callback(point)


class ImageButtons(anywidget.AnyWidget):
    """PNG and SVG buttons that download ``plots`` as one image, made in the browser (without
    ``plots``: every figure of the view, ``.reprlab-view``, the buttons sit in, and its token
    strips with their colour legends, painted where they are on the page: backgrounds,
    outlines and words, so the image shows the coloured tokens beside the figures)."""

    _esm = _BUTTONS_ESM
    _css = _CSS
    figures = traitlets.List(traitlets.Unicode()).tag(sync=True)
    filename = traitlets.Unicode("figure").tag(sync=True)
    library = traitlets.Instance(PlotlyLibrary).tag(sync=True, **widget_serialization)

    def __init__(self, plots: Sequence[Plot] = (), filename: str = "figure", **kwargs):
        super().__init__(figures=[p.key for p in plots], filename=filename,
                         library=plotly_library(), **kwargs)
