"""Plumbing every view shares: status line, progress bar, background work, export.

A view is controls + one kernel call per user action + a render of the result. ``View.submit``
runs the kernel call (in a background thread by default, so the notebook stays responsive),
drops results that a newer request has superseded, and shows any error in the status line
without losing what the view already holds.
"""

from __future__ import annotations

import html
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W

from reprlab.export import write_csv

from .exporting import export_html, has_content, html_of, settings
from .plot import ImageButtons, Plot


class Superseded(Exception):
    """Raised inside work whose result is no longer wanted (a newer request came in)."""


class View(W.VBox):
    """Base for reprlab views: ``status``, ``progress``, ``submit``/``wait``, ``result``."""

    def __init__(self, session, *, background: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.add_class("reprlab-view")  # the PNG/SVG buttons find the view's figures by it
        self.session = session
        self.background = background
        self.result: Any = None
        self.status = W.HTML(layout=W.Layout(min_height="1.6em"))
        self.progress = W.FloatProgress(min=0.0, max=1.0, layout=W.Layout(width="240px",
                                                                           visibility="hidden"))
        self.export_html_button = W.Button(description="HTML", icon="download",
                                           tooltip="save what the view shows as standalone HTML "
                                                   "(next to the notebook, on the server)",
                                           layout=W.Layout(width="90px"))
        self.export_csv_button = W.Button(description="CSV", icon="table",
                                          tooltip="save the data behind the view as CSV",
                                          layout=W.Layout(width="90px"))
        self.export_html_button.on_click(lambda _: self._export(self.export_html))
        self.export_csv_button.on_click(lambda _: self._export(self.export_csv))
        self._footer: W.HBox | None = None
        self.after_work: list[Callable[[], None]] = []  # called after each finished render
        self._request = 0
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._shown = self._missed_events = False

    # -- status ---------------------------------------------------------------------------------

    def show_info(self, text: str) -> None:
        self.status.value = f"<span style='color:#555'>{html.escape(text)}</span>"

    def show_error(self, err: BaseException) -> None:
        """Show ``err`` in the status line; the kernel keeps running and state is kept."""
        self.last_error = err
        message = f"{type(err).__name__}: {err}"
        self.status.value = (
            "<span style='color:#b00020'><b>Error.</b> "
            f"{html.escape(message)}</span>"
        )

    @property
    def footer(self) -> W.HBox:
        """Export buttons (HTML, CSV; PNG and SVG made in the browser when the view has
        figures), the progress bar and the status line."""
        if self._footer is None:
            images = [ImageButtons(filename=f"reprlab-{type(self).__name__}")] \
                if self.plots() else []
            self._footer = W.HBox([self.export_html_button, self.export_csv_button, *images,
                                   self.progress, self.status],
                                  layout=W.Layout(flex_flow="row wrap", align_items="center"))
        return self._footer

    # -- export ---------------------------------------------------------------------------------

    def plots(self) -> list[Plot]:
        """The figure widgets of this view."""
        return [v for v in vars(self).values() if isinstance(v, Plot)]

    def figures(self) -> list:
        """The plotly figures this view shows now."""
        return [p.figure for p in self.plots() if p.data]

    def rows(self) -> list[dict]:
        """The data behind the view, one dict per row (each view says what)."""
        return []

    def export_html(self, path: str | Path | None = None) -> Path:
        """Write what the view shows (its settings, texts, token strips, tables and figures, in
        the view's layout) into one standalone HTML file; figures follow the page width, and
        plotly.js is embedded when there is a figure, so it works offline
        (:mod:`reprlab.widgets.exporting`).

        >>> view.export_html("steering.html")                         # doctest: +SKIP
        """
        return export_html(self, path or self._default_name("html"))

    def export_image(self, path: str | Path | None = None, format: str = "png",
                     scale: float = 2.0) -> list[Path]:
        """Write each figure as a PNG or SVG file on the server, for code (in the notebook the
        footer's PNG/SVG buttons download them in the browser instead). Needs kaleido, which
        drives a local Chrome or Chromium; one figure writes ``path``, several write
        ``path-1``, ``path-2``, ...

        >>> view.export_image("curve.svg", format="svg")              # doctest: +SKIP
        """
        if format not in ("png", "svg"):
            raise ValueError(f"format {format!r}: choose 'png' or 'svg'")
        figures = self.figures()
        if not figures:
            raise ValueError("nothing to export yet: wait for the view to draw")
        try:
            import kaleido  # noqa: F401
        except ImportError:
            raise RuntimeError("server-side images need kaleido (pip install kaleido) and a "
                               "Chrome or Chromium; in the notebook, use the PNG/SVG buttons, "
                               "which make the images in your browser") from None
        path = Path(path or self._default_name(format)).with_suffix(f".{format}")
        paths = [path] if len(figures) == 1 else \
            [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, len(figures) + 1)]
        for figure, target in zip(figures, paths):
            width = figure.layout.width or 640
            figure.write_image(target, format=format, width=width, scale=scale)
        return paths

    def export_csv(self, path: str | Path | None = None) -> Path:
        """Write :meth:`rows` as CSV."""
        rows = self.rows()
        if not rows:
            raise ValueError("nothing to export yet: wait for the view to compute")
        return write_csv(rows, path or self._default_name("csv"))  # formula cells neutralized

    def _default_name(self, ext: str) -> str:
        return f"reprlab-{type(self).__name__}-{time.strftime('%Y%m%d-%H%M%S')}.{ext}"

    def _export(self, export) -> None:
        try:
            path = export()
        except Exception as err:
            self.show_error(err)
            return
        self.show_info(f"Saved {path.resolve()}")

    # -- work -----------------------------------------------------------------------------------

    def submit(
        self,
        work: Callable[[Callable[[int, int], None]], Any],
        render: Callable[[Any], None],
        busy: str = "Working…",
        preview: Callable[[Any], None] | None = None,
    ) -> None:
        """Run ``work(progress)`` then ``render(result)``; a newer submit supersedes this one.

        ``progress(done, total)`` updates the bar and raises :class:`Superseded` once the
        request is stale, so long work stops early instead of finishing for nothing.
        ``progress(done, total, partial)`` also shows ``preview(partial)`` (text streaming in);
        work writes widget state only through ``preview`` and ``render``, never after it was
        superseded.
        """
        with self._lock:
            self._request += 1
            request = self._request
        self.show_info(busy)

        def progress(done: int, total: int, partial: Any = None) -> None:
            if request != self._request:
                raise Superseded
            self.progress.layout.visibility = "visible"
            self.progress.value = done / max(total, 1)
            if partial is not None and preview is not None:
                preview(partial)

        def job() -> None:
            try:
                value = work(progress)
                if request != self._request:
                    return
                render(value)
                if self.status.value.endswith(f"{html.escape(busy)}</span>"):
                    self.status.value = ""
            except Superseded:
                return
            except Exception as err:  # shown in the widget, never raised into the kernel
                if request == self._request:
                    self.show_error(err)
                    self.last_traceback = traceback.format_exc()
            finally:
                if request == self._request:
                    self.progress.layout.visibility = "hidden"
                    for callback in list(self.after_work):  # e.g. the Explorer's header
                        callback()

        if self.background:
            self._worker = threading.Thread(target=job, daemon=True, name="reprlab-view")
            self._worker.start()
        else:
            job()

    # -- the session's direction registry ---------------------------------------------------

    def follow_registry(self) -> None:
        """Hear the session's registry events in :meth:`on_registry` while this view lives.

        The registry holds the view weakly and :meth:`close` unsubscribes. A view whose last
        display was removed from the page (its cell re-run or cleared) ignores events until it
        is shown again, so old copies of a view do no work.
        """
        self._unsubscribe = self.session.directions.observe(self._registry_event)
        self._view_count = 0  # start counting the front end's displays of this view
        self.observe(self._on_view_count, "_view_count")

    def on_registry(self, event: str, name: str | None) -> None:
        """React to a direction ``name`` "added" or "removed" (None: resynchronize)."""

    @property
    def hidden(self) -> bool:
        """True once every display of this view was removed from the page."""
        return self._shown and not self._view_count

    def _registry_event(self, event: str, direction) -> None:
        if self.hidden:
            self._missed_events = True
        else:
            self.on_registry(event, direction.name)

    def _on_view_count(self, change) -> None:
        if (change["new"] or 0) > 0:
            self._shown = True
            if self._missed_events:
                self._missed_events = False
                self.on_registry("removed", None)

    def close(self) -> None:
        """Stop listening to the registry and close this view with all its controls."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for child in _descendants(self):
            child.close()
        super().close()

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the current background work has finished (for scripts and tests)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)


def _visible(widget: W.Widget) -> bool:
    layout = getattr(widget, "layout", None)
    return not (layout is not None and (layout.display == "none" or
                                         layout.visibility == "hidden"))


def _descendants(box: W.Widget) -> list[W.Widget]:
    out = []
    for child in getattr(box, "children", ()):
        out += [child, *_descendants(child)]
    return out


def _html_of(widget: W.Widget, skip: set) -> str:
    """What ``widget`` shows, as HTML (see :func:`reprlab.widgets.exporting.html_of`)."""
    return html_of(widget, skip)


_has_content = has_content
_settings = settings


def pick_layer(slider: W.IntSlider, point: dict) -> None:
    """Move a layer slider to a clicked point of a per-layer curve (``Plot.on_click``)."""
    x = point.get("x")
    if isinstance(x, (int, float)) and slider.min <= round(x) <= slider.max:
        slider.value = int(round(x))


def registry_target(names: list[str], current: str | None, event: str,
                    name: str | None) -> str | None:
    """What a direction dropdown should select after a registry event: a direction just added,
    the new name of the selected one, else the current one while it still exists, else the
    newest."""
    if event == "added":
        return name
    if event == "renamed" and current not in names:  # the selected one got a new name
        return name
    return current if current in names else (names[-1] if names else None)
