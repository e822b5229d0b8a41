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

from .exporting import export_html
from .plot import ImageButtons, Plot

#: Dims a view's outputs while they are out of date, with a badge saying why: the view gets
#: ``reprlab-busy`` while work for a new setting runs and ``reprlab-stale`` after an error (the
#: old figures and texts stay, marked as not current); outputs carry ``reprlab-output``.
STATE_CSS = """<style>
.reprlab-busy .reprlab-output, .reprlab-stale .reprlab-output { position: relative; }
.reprlab-busy .reprlab-output > *, .reprlab-stale .reprlab-output > * {
  opacity: 0.35; transition: opacity 0.2s; }
.reprlab-busy .reprlab-output::after, .reprlab-stale .reprlab-output::after {
  position: absolute; top: 6px; left: 50%; transform: translateX(-50%); z-index: 5;
  padding: 2px 10px; border-radius: 10px; font-size: 13px; pointer-events: none; }
.reprlab-busy .reprlab-output::after { content: "computing \2026"; background: #fff3cd;
  color: #5c4400; border: 1px solid #e6c96b; }
.reprlab-stale:not(.reprlab-busy) .reprlab-output::after {
  content: "not updated: fix the error above"; background: #fde8ea; color: #8a0016;
  border: 1px solid #e7a1aa; }
.reprlab-notice { font-size: 13px; line-height: 1.35; }
.reprlab-spinner { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em;
  border: 2px solid #c9a227; border-top-color: transparent; border-radius: 50%;
  vertical-align: -0.1em; animation: reprlab-spin 0.9s linear infinite; }
@keyframes reprlab-spin { to { transform: rotate(360deg); } }
</style>"""

#: Control rows wrap instead of overflowing a narrow output area (JupyterLab at 1024 x 768 with
#: the file browser open leaves 600-700 px).
ROW = dict(flex_flow="row wrap", align_items="center", max_width="100%")


def row(*children, **layout) -> W.HBox:
    """A row of controls that wraps onto more lines when the output area is narrow."""
    return W.HBox(list(children), layout=W.Layout(**{**ROW, **layout}))


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
        # next to the controls: "computing ..." while work runs, the error after one
        self.notice = W.HTML(layout=W.Layout(margin="0 0 0 4px"))
        self.notice.add_class("reprlab-notice")
        self.last_error: BaseException | None = None
        self.progress = W.FloatProgress(min=0.0, max=1.0, layout=W.Layout(width="240px",
                                                                           visibility="hidden"))
        self.export_html_button = W.Button(description="HTML", icon="download",
                                           tooltip="save what the view shows as standalone HTML "
                                                   "(next to the notebook, on the server)",
                                           layout=W.Layout(width="auto", min_width="90px"))
        self.export_csv_button = W.Button(description="CSV", icon="table",
                                          tooltip="save the data behind the view as CSV",
                                          layout=W.Layout(width="auto", min_width="90px"))
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

    def show_error(self, err: BaseException, stale: bool = True) -> None:
        """Show ``err`` in the status line and beside the controls; the kernel keeps running
        and state is kept. ``stale``: the outputs no longer match the controls, so they are
        dimmed with "not updated" until the next successful render, and work still running
        for an older setting is dropped (it would otherwise draw over the error)."""
        if stale:
            with self._lock:
                self._request += 1
            self.progress.layout.visibility = "hidden"
        self._show_error(err, stale)

    def _show_error(self, err: BaseException, stale: bool) -> None:
        self.last_error = err
        message = f"{type(err).__name__}: {err}"
        self.status.value = (
            "<span style='color:#b00020'><b>Error.</b> "
            f"{html.escape(message)}</span>"
        )
        self.notice.value = (
            f"{STATE_CSS}<span style='color:#b00020'><b>Not updated.</b> "
            f"{html.escape(message)}</span>")
        self.remove_class("reprlab-busy")
        if stale:
            self.add_class("reprlab-stale")

    def show_busy(self, text: str) -> None:
        """Mark the outputs as out of date while work for the current setting runs."""
        self.show_info(text)
        self.notice.value = (f"{STATE_CSS}<span style='color:#5c4400'><span "
                             f"class='reprlab-spinner'></span>computing … "
                             f"{html.escape(text.rstrip('…. '))}</span>")
        self.add_class("reprlab-busy")

    def show_current(self) -> None:
        """The outputs match the controls again: undim them and clear the inline notice."""
        self.remove_class("reprlab-busy")
        self.remove_class("reprlab-stale")
        self.notice.value = ""

    @property
    def busy(self) -> bool:
        """True while work for the current setting runs."""
        return "reprlab-busy" in self._dom_classes

    @property
    def stale(self) -> bool:
        """True while the outputs are from before an error (dimmed, "not updated")."""
        return "reprlab-stale" in self._dom_classes

    def mark_outputs(self, *widgets: W.Widget) -> None:
        """Tag figures and texts that dim while the view is busy or stale (the view's plots
        are always tagged)."""
        for widget in (*widgets, *self.plots()):
            widget.add_class("reprlab-output")

    @property
    def footer(self) -> W.HBox:
        """Export buttons (HTML, CSV; PNG and SVG made in the browser when the view has
        figures), the progress bar and the status line."""
        if self._footer is None:
            images = [ImageButtons(filename=f"reprlab-{type(self).__name__}")] \
                if self.plots() else []
            self._footer = W.HBox([self.export_html_button, self.export_csv_button, *images,
                                   self.progress, self.status],
                                  layout=W.Layout(**ROW))
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
            self.show_error(err, stale=False)
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
        self.show_busy(busy)

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
                if request == self._request:
                    self.show_current()
                if self.status.value.endswith(f"{html.escape(busy)}</span>"):
                    self.status.value = ""
            except Superseded:
                return
            except Exception as err:  # shown in the widget, never raised into the kernel
                if request == self._request:
                    self._show_error(err, stale=True)
                    self.last_traceback = traceback.format_exc()
            finally:
                if request == self._request:
                    self.remove_class("reprlab-busy")  # rendered, failed or stopped
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


def _descendants(box: W.Widget) -> list[W.Widget]:
    out = []
    for child in getattr(box, "children", ()):
        out += [child, *_descendants(child)]
    return out


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
    if event == "added" and name in names:
        return name
    if event == "renamed" and current not in names:  # the selected one got a new name
        return name
    return current if current in names else (names[-1] if names else None)
