"""Standalone HTML export of a view: what it shows, in its layout, readable offline.

Figures are responsive: no fixed width, ``config={"responsive": True}`` and a
``ResizeObserver`` on each figure's cell, in a flex layout whose cells can shrink
(``flex:1 1 320px; min-width:0``), so both figures of a pair fit the page at 1024 px and at
700 px. The figures are drawn by scripts at the end of the page, once every cell exists: a
figure drawn while its row held only itself would keep the whole row's width (the left figure
of a pair was clipped until the window was resized). plotly.js is embedded only when the page
has a figure, so a view of texts stays small.

>>> export_html(view, "steering.html")                              # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import uuid
from pathlib import Path

import ipywidgets as W
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from .plot import Plot

CONFIG = {"responsive": True, "displaylogo": False,
          "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
CELL = "flex:1 1 320px;min-width:0"   # a cell of an HBox: shares the row, may shrink, wraps
PAGE_STYLE = ("font-family:sans-serif;max-width:1100px;margin:auto;padding:0 8px;"
              "box-sizing:border-box")


def visible(widget: W.Widget) -> bool:
    layout = getattr(widget, "layout", None)
    return not (layout is not None and (layout.display == "none" or
                                         layout.visibility == "hidden"))


class _Page:
    """The figures of one export: their divs go in place, their drawing scripts at the end."""

    def __init__(self):
        self.scripts: list[str] = []

    def figure(self, plot: Plot) -> str:
        fig = plot.figure.to_plotly_json()
        layout = dict(fig.get("layout", {}))
        layout.pop("width", None)      # the page decides the width
        layout["autosize"] = True
        height = layout.get("height") or plot.height
        div = f"reprlab-{uuid.uuid4().hex[:12]}"
        spec = json.dumps({"data": fig.get("data", []), "layout": layout},
                          cls=PlotlyJSONEncoder).replace("</", "<\\/")
        self.scripts.append(
            f"<script>(function(){{var gd=document.getElementById('{div}');"
            f"var fig={spec};Plotly.newPlot(gd,fig.data,fig.layout,{json.dumps(CONFIG)});"
            "if(window.ResizeObserver){new ResizeObserver(function(){"
            "if(gd._fullLayout)Plotly.Plots.resize(gd);}).observe(gd.parentNode);}})();"
            "</script>")
        return (f"<div class='reprlab-export-plot' id='{div}' "
                f"style='width:100%;height:{int(height)}px'></div>")


def html_of(widget: W.Widget, skip: set, page: _Page | None = None) -> str:
    """What ``widget`` shows, as HTML: texts and tables as they are, figures as responsive
    plotly divs (drawn by ``page``'s scripts), boxes in their layout; controls are left out
    (their values go in the settings line)."""
    page = page if page is not None else _Page()
    if widget in skip or not visible(widget):
        return ""
    if isinstance(widget, Plot):
        return page.figure(widget) if widget.data else ""
    if isinstance(widget, W.HTML):
        return f"<div>{widget.value}</div>" if widget.value else ""
    if isinstance(widget, W.Box):
        parts = [p for p in (html_of(c, skip, page) for c in widget.children) if p]
        if not parts:
            return ""
        if isinstance(widget, W.HBox):
            cells = "".join(f"<div class='reprlab-export-cell' style='{CELL}'>{p}</div>"
                            for p in parts)
            return f"<div style='display:flex;flex-wrap:wrap;gap:8px'>{cells}</div>"
        return "".join(parts)
    return ""


def has_content(view) -> bool:
    if any(p.data for p in view.plots()):
        return True
    return view.result is not None


def settings(widget: W.Widget):
    """(label, value) of every visible control under ``widget``, in display order."""
    if not visible(widget):
        return
    if isinstance(widget, W.Box):
        for child in widget.children:
            yield from settings(child)
    elif isinstance(widget, W.ValueWidget) and not isinstance(widget, (W.HTML, W.Label,
                                                                       W.FloatProgress)):
        label = widget.description or getattr(widget, "placeholder", "") or ""
        value = widget.value
        if label and value not in ("", None):
            yield label, f"{value:.3g}" if isinstance(value, float) else str(value)


def page_html(view) -> str:
    """The standalone page of what ``view`` shows (see :func:`export_html`)."""
    page = _Page()
    body = "".join(html_of(child, {view.footer}, page) for child in view.children)
    if not has_content(view):
        raise ValueError("nothing to export yet: wait for the view to draw")
    line = " · ".join(f"{html.escape(label)}: {html.escape(value)}"
                      for label, value in settings(view))
    name = type(view).__name__
    library = f"<script>{get_plotlyjs()}</script>" if page.scripts else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>reprlab {name}</title>{library}</head>"
            f"<body style='{PAGE_STYLE}'><h2>{name}</h2><p style='color:#555'>{line}</p>"
            f"{body}{''.join(page.scripts)}</body></html>")


def export_html(view, path: str | Path) -> Path:
    """Write :func:`page_html` of ``view`` to ``path``."""
    path = Path(path)
    path.write_text(page_html(view), "utf-8")
    return path
