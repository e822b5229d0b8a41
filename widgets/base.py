"""Plumbing every view shares: status line, progress bar, background work, figure sync.

A view is controls + one kernel call per user action + a render of the result. ``View.submit``
runs the kernel call (in a background thread by default, so the notebook stays responsive),
drops results that a newer request has superseded, and shows any error in the status line
without losing what the view already holds.
"""

from __future__ import annotations

import csv
import html
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go


class Superseded(Exception):
    """Raised inside work whose result is no longer wanted (a newer request came in)."""


class View(W.VBox):
    """Base for reprlab views: ``status``, ``progress``, ``submit``/``wait``, ``result``."""

    def __init__(self, session, *, background: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.background = background
        self.result: Any = None
        self.status = W.HTML(layout=W.Layout(min_height="1.6em"))
        self.progress = W.FloatProgress(min=0.0, max=1.0, layout=W.Layout(width="240px",
                                                                           visibility="hidden"))
        self.export_html_button = W.Button(description="HTML", icon="download",
                                           tooltip="save the figures as standalone HTML",
                                           layout=W.Layout(width="90px"))
        self.export_csv_button = W.Button(description="CSV", icon="table",
                                          tooltip="save the data behind the view as CSV",
                                          layout=W.Layout(width="90px"))
        self.export_html_button.on_click(lambda _: self._export(self.export_html))
        self.export_csv_button.on_click(lambda _: self._export(self.export_csv))
        self.footer = W.HBox([self.export_html_button, self.export_csv_button, self.progress,
                              self.status])
        self._request = 0
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

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

    # -- export ---------------------------------------------------------------------------------

    def figures(self) -> list[go.Figure]:
        """The plotly figures this view shows (FigureWidgets among its attributes)."""
        return [v for v in vars(self).values() if isinstance(v, go.FigureWidget) and v.data]

    def rows(self) -> list[dict]:
        """The data behind the view, one dict per row (each view says what)."""
        return []

    def export_html(self, path: str | Path | None = None) -> Path:
        """Write the figures into one standalone HTML file (plotly.js embedded: works offline).

        A PNG of each figure is written beside it when kaleido is installed.
        """
        path = Path(path or self._default_name("html"))
        figures = self.figures()
        if not figures:
            raise ValueError("nothing to export yet: wait for the view to draw")
        parts = [go.Figure(f).to_html(full_html=False, include_plotlyjs=(i == 0))
                 for i, f in enumerate(figures)]
        path.write_text(f"<html><head><meta charset='utf-8'><title>{type(self).__name__}"
                        f"</title></head><body>{''.join(parts)}</body></html>", "utf-8")
        try:
            import kaleido  # noqa: F401

            for i, f in enumerate(figures):
                go.Figure(f).write_image(path.with_name(f"{path.stem}-{i}.png"))
        except Exception:  # kaleido missing or without a browser: HTML is enough
            pass
        return path

    def export_csv(self, path: str | Path | None = None) -> Path:
        """Write :meth:`rows` as CSV."""
        rows = self.rows()
        if not rows:
            raise ValueError("nothing to export yet: wait for the view to compute")
        path = Path(path or self._default_name("csv"))
        fields = list(dict.fromkeys(k for row in rows for k in row))
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        return path

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
    ) -> None:
        """Run ``work(progress)`` then ``render(result)``; a newer submit supersedes this one.

        ``progress(done, total)`` updates the bar and raises :class:`Superseded` once the
        request is stale, so long work stops early instead of finishing for nothing.
        """
        with self._lock:
            self._request += 1
            request = self._request
        self.show_info(busy)

        def progress(done: int, total: int) -> None:
            if request != self._request:
                raise Superseded
            self.progress.layout.visibility = "visible"
            self.progress.value = done / max(total, 1)

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

        if self.background:
            self._worker = threading.Thread(target=job, daemon=True, name="reprlab-view")
            self._worker.start()
        else:
            job()

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the current background work has finished (for scripts and tests)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)


def figure_widget(height: int) -> go.FigureWidget:
    """An empty plotly FigureWidget of ``height`` px in the views' template."""
    return go.FigureWidget(layout={"height": height, "template": "plotly_white"})


def sync_figure(target: go.FigureWidget, source: go.Figure, width: int | None = None) -> None:
    """Make ``target`` show ``source``: update traces in place when their types match."""
    with target.batch_update():
        same = len(target.data) == len(source.data) and all(
            a.type == b.type for a, b in zip(target.data, source.data)
        )
        if same:
            for old, new in zip(target.data, source.data):
                old.update(new.to_plotly_json(), overwrite=True)
        else:
            target.data = ()
            target.add_traces(list(source.data))
        target.layout = source.layout
        if width is not None:
            target.layout.width = width


def registry_target(names: list[str], current: str | None, event: str, name: str) -> str | None:
    """What a direction dropdown should select after a registry event: a direction just added,
    else the current one while it still exists, else the newest."""
    if event == "added":
        return name
    return current if current in names else (names[-1] if names else None)
