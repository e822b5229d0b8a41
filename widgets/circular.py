"""CircularMap: watch a cycle (days, months, hours, your own) take shape layer by layer.

>>> CircularMap(session, cycle="months")                            # doctest: +SKIP
"""

from __future__ import annotations

import threading

import ipywidgets as W

from reprlab.circular import circular_analysis, load_cycle, warm_umap
from reprlab.geometry import inner_note
from reprlab.types import INNER_PRODUCTS

from .base import View, pick_layer
from .figures import circular_scatter, circularity_curve, layer_marker
from .help import caption, explain
from .plot import Plot

CYCLES = ("days", "months", "hours", "custom")
METHODS = {"PCA": "pca", "UMAP": "umap", "circle probe": "circle_probe"}
_umap_ready = threading.Event()


def _warm_umap_once() -> None:
    if not _umap_ready.is_set():
        warm_umap()
        _umap_ready.set()


class CircularMap(View):
    """Examples of a cyclic concept in 2-D at a chosen layer, beside the per-layer
    circularity test (ρ with cyclic vs linear distance, permutation null band).

    Moving the layer slider redraws from cached results; the model never reruns.
    UMAP compiles with numba on first use: it is warmed in the background when the view opens,
    and PCA is shown until it is ready.
    """

    def __init__(self, session, cycle: str = "days", *, background: bool = True,
                 warm: bool = True, **view_options):
        super().__init__(session, background=background)
        self.view_options = view_options
        self.views: dict[tuple, object] = {}
        self.cycle = W.Dropdown(options=CYCLES, value=cycle if cycle in CYCLES else "custom",
                                description="cycle", layout=W.Layout(width="200px"))
        self.custom = W.Text(placeholder="red, orange, yellow, green, blue, violet",
                             layout=W.Layout(width="360px", display="none"),
                             continuous_update=False)
        if cycle not in CYCLES:
            self.custom.value = cycle if isinstance(cycle, str) else ", ".join(cycle)
        self.method = W.ToggleButtons(options=list(METHODS), value="PCA", description="method",
                                      style={"button_width": "100px"})
        self.inner = W.ToggleButtons(options=INNER_PRODUCTS, value="standardized",
                                     description="geometry", style={"button_width": "100px"})
        self.layer = W.IntSlider(description="layer", min=0, max=session.n_blocks,
                                 value=min(8, session.n_blocks), continuous_update=True,
                                 layout=W.Layout(width="520px"))
        self.summary = W.HTML()
        self.map_fig = Plot(height=430)
        self.curve_fig = Plot(height=430)
        self.curve_fig.on_click(lambda point: pick_layer(self.layer, point))
        self._curve_of = None  # the statistics the curve figure shows
        for control, key in ((self.cycle, "cycle"), (self.custom, "cycle"),
                             (self.method, "method"), (self.inner, "inner"),
                             (self.layer, "layer")):
            explain(control, key)
        self.children = [
            caption("circular"),
            W.HBox([self.cycle, self.custom]),
            W.HBox([self.method, self.inner]),
            self.layer,
            W.HBox([self.map_fig, self.curve_fig]),
            self.summary,
            self.footer,
        ]
        self.cycle.observe(self._on_cycle, "value")
        self.custom.observe(lambda _: self.compute(), "value")
        self.inner.observe(lambda _: self.compute(), "value")
        self.method.observe(lambda _: self.render_layer(), "value")
        self.layer.observe(lambda _: self.render_layer(), "value")
        self._on_cycle(None, compute=False)
        if warm and background:
            threading.Thread(target=_warm_umap_once, daemon=True, name="umap-warmup").start()
        self.compute()

    # -- actions --------------------------------------------------------------------------------

    def compute(self) -> None:
        """Statistics and PCA / circle-probe coordinates for every layer: one model call, one
        permutation test and one ridge fit per (cycle, inner product), kept for switching back."""
        cycle = self._cycle_spec()
        if cycle is None:
            self.show_info("Type at least four items, separated by commas.")
            return
        inner = self.inner.value
        try:
            key = self._key(cycle, inner)
        except ValueError as err:  # e.g. repeated custom items: shown, the view keeps its map
            self.show_error(err)
            return
        if (*key, "pca") in self.views:
            self._show(key)
            return

        def work(progress):
            probe = circular_analysis(self.session, cycle, method="circle_probe", inner=inner,
                                      progress=progress, **self.view_options)
            base = circular_analysis(self.session, cycle, method="pca", inner=inner,
                                     progress=progress, stats=probe.stats, **self.view_options)
            return base, probe

        def render(value):
            base, probe = value
            self.views[(*key, "pca")] = base
            self.views[(*key, "circle_probe")] = probe
            self._show(key)

        self.submit(work, render, busy=(
            "Reading every example of the cycle at every layer, then testing the circle against "
            "shuffled orders (the first time for a cycle and geometry takes a while)…"))

    def render_layer(self) -> None:
        """Redraw the map and marker for the slider's layer (cached; UMAP on demand, reusing
        the layer's statistics)."""
        if self.result is None:
            return
        layer, method = self.layer.value, METHODS[self.method.value]
        base = self.result
        key = (base.cycle, base.items, base.inner)
        view_key = (*key, method) if method != "umap" else (*key, "umap", layer)
        if view_key in self.views:
            self._draw(self.views[view_key], layer)
            return
        self._draw(base, layer)  # PCA meanwhile
        cycle = self._cycle_spec()
        busy = ("Computing UMAP (the first call compiles numba kernels, ~20 s); PCA shown "
                "meanwhile…" if not _umap_ready.is_set() else "Computing UMAP…")
        stats = base.stats.take([base.index(layer)])

        def work(progress):
            view = circular_analysis(self.session, cycle, layers=[layer], method="umap",
                                     inner=base.inner, progress=progress, stats=stats,
                                     **self.view_options)
            _umap_ready.set()
            return view

        def render(view):
            self.views[view_key] = view
            if self.layer.value == layer and METHODS[self.method.value] == "umap":
                self._draw(view, layer)

        self.submit(work, render, busy=busy)

    def rows(self) -> list[dict]:
        """Per-layer circularity statistics (see :meth:`CircularAnalysis.rows`)."""
        return self.result.rows() if self.result is not None else []

    # -- internals ------------------------------------------------------------------------------

    def _show(self, key: tuple) -> None:
        self.result = self.views[(*key, "pca")]
        self.render_layer()

    def _key(self, cycle, inner: str) -> tuple:
        items = load_cycle(cycle, self.view_options.get("templates")).items
        name = cycle if isinstance(cycle, str) else "custom"
        return (name, items, inner)

    def _draw(self, view, layer: int) -> None:
        stats_view = self.result
        self.map_fig.draw(circular_scatter(view, layer))
        if self._curve_of is stats_view:
            self.curve_fig.relayout(shapes=layer_marker(layer))
        else:
            self.curve_fig.draw(circularity_curve(stats_view, layer))
            self._curve_of = stats_view
        caveat = inner_note(self.session, stats_view.inner, layer)
        self.summary.value = f"<code>{stats_view.summary(layer)}</code>" + (
            f"<br><i style='color:#555'>Note: {caveat}</i>" if caveat else "")

    def _on_cycle(self, _, compute: bool = True) -> None:
        custom = self.cycle.value == "custom"
        self.custom.layout.display = "" if custom else "none"
        if compute:
            self.compute()

    def _cycle_spec(self):
        if self.cycle.value != "custom":
            return self.cycle.value
        items = [x.strip() for x in self.custom.value.split(",") if x.strip()]
        return items if len(items) >= 4 else None
