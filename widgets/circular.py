"""CircularMap: watch a cycle (days, months, hours, your own) take shape layer by layer.

>>> CircularMap(session, cycle="months")                            # doctest: +SKIP
"""

from __future__ import annotations

import threading

import ipywidgets as W

from reprlab.circular import CircularAnalysis, circular_analysis, load_cycle, warm_umap
from reprlab.geometry import inner_note
from reprlab.types import INNER_PRODUCTS

from .base import View, pick_layer, row
from .figures import circular_scatter, circularity_curve, layer_marker
from .help import Dropdown, Text, caption, explain
from .plot import Plot

CYCLES = ("days", "months", "hours", "custom")
MAP_METHODS = {"PCA": "pca", "UMAP": "umap", "circle probe": "circle_probe"}
METHODS = MAP_METHODS  # the old name, kept for imports
_umap_ready = threading.Event()


def _warm_umap_once() -> None:
    if not _umap_ready.is_set():
        warm_umap()
        _umap_ready.set()


class CircularMap(View):
    """Examples of a cyclic concept in 2-D at a chosen layer, beside the per-layer
    circularity test (ρ with cyclic vs linear distance, permutation null band).

    Moving the layer slider redraws from cached results (kernel
    :class:`~reprlab.circular.CircularAnalysis` results, one per cycle, geometry and 2-D map);
    the model never reruns.
    UMAP compiles with numba on first use: it is warmed in the background when the view opens,
    and PCA is shown until it is ready.
    """

    def __init__(self, session, cycle: str = "days", *, background: bool = True,
                 warm: bool = True, **analysis_options):
        super().__init__(session, background=background)
        self.analysis_options = analysis_options  # passed on to circular_analysis
        self.analyses: dict[tuple, CircularAnalysis] = {}  # (cycle, items, inner, map, ...)
        self.cycle = Dropdown(options=CYCLES, value=cycle if cycle in CYCLES else "custom",
                              description="cycle", layout=W.Layout(width="200px"))
        self.custom = Text(placeholder="red, orange, yellow, green, blue, violet",
                             layout=W.Layout(width="360px", display="none"),
                             continuous_update=False)
        if cycle not in CYCLES:
            self.custom.value = cycle if isinstance(cycle, str) else ", ".join(cycle)
        self.map_method = W.ToggleButtons(options=list(MAP_METHODS), value="PCA",
                                          description="2-D map", style={"button_width": "110px"})
        self.inner = W.ToggleButtons(options=INNER_PRODUCTS, value="standardized",
                                     description="geometry", style={"button_width": "120px"})
        self.layer = W.IntSlider(description="layer", min=0, max=session.n_blocks,
                                 value=min(8, session.n_blocks), continuous_update=True,
                                 layout=W.Layout(width="520px"))
        self.summary = W.HTML()
        self.map_fig = Plot(height=430)
        self.curve_fig = Plot(height=430)
        self.curve_fig.on_click(lambda point: pick_layer(self.layer, point))
        self._curve_of = None  # the statistics the curve figure shows
        for control, key in ((self.cycle, "cycle"), (self.custom, "cycle"),
                             (self.map_method, "method"), (self.inner, "inner"),
                             (self.layer, "layer")):
            explain(control, key)
        self.mark_outputs(self.summary)
        self.children = [
            caption("circular"),
            row(self.cycle, self.custom),
            row(self.map_method, self.inner),
            self.layer,
            self.notice,
            W.HBox([self.map_fig, self.curve_fig]),
            self.summary,
            self.footer,
        ]
        self.cycle.observe(self._on_cycle, "value")
        self.custom.observe(lambda _: self.compute(), "value")
        self.inner.observe(lambda _: self.compute(), "value")
        self.map_method.observe(lambda _: self.render_layer(), "value")
        self.layer.observe(lambda _: self.render_layer(), "value")
        self._on_cycle(None, compute=False)
        if warm and background:
            threading.Thread(target=_warm_umap_once, daemon=True, name="umap-warmup").start()
        self.compute()

    @property
    def method(self) -> W.ToggleButtons:
        """The 2-D map control (old name of :attr:`map_method`)."""
        return self.map_method

    @property
    def views(self) -> dict[tuple, CircularAnalysis]:
        """Old name of :attr:`analyses` (they are kernel results, not views)."""
        return self.analyses

    @property
    def view_options(self) -> dict:
        """Old name of :attr:`analysis_options`."""
        return self.analysis_options

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
        if (*key, "pca") in self.analyses:
            self._show(key)
            return

        def work(progress):
            probe = circular_analysis(self.session, cycle, map_method="circle_probe",
                                      inner=inner, progress=progress, **self.analysis_options)
            base = circular_analysis(self.session, cycle, map_method="pca", inner=inner,
                                     progress=progress, stats=probe.stats,
                                     **self.analysis_options)
            return base, probe

        def render(value):
            base, probe = value
            self.analyses[(*key, "pca")] = base
            self.analyses[(*key, "circle_probe")] = probe
            self._show(key)

        self.submit(work, render, busy=(
            "Reading every example of the cycle at every layer, then testing the circle against "
            "shuffled orders (the first time for a cycle and geometry takes a while)…"))

    def render_layer(self) -> None:
        """Redraw the map and marker for the slider's layer (cached; UMAP on demand, reusing
        the layer's statistics)."""
        if self.result is None:
            return
        layer, map_method = self.layer.value, MAP_METHODS[self.map_method.value]
        base = self.result
        key = (base.cycle, base.items, base.inner)
        map_key = (*key, map_method) if map_method != "umap" else (*key, "umap", layer)
        if map_key in self.analyses:
            self._draw(self.analyses[map_key], layer)
            return
        self._draw(base, layer)  # PCA meanwhile
        cycle = self._cycle_spec()
        busy = ("Computing UMAP (the first call compiles numba kernels, ~20 s); PCA shown "
                "meanwhile…" if not _umap_ready.is_set() else "Computing UMAP…")
        stats = base.stats.take([base.index(layer)])

        def work(progress):
            umap = circular_analysis(self.session, cycle, layers=[layer], map_method="umap",
                                     inner=base.inner, progress=progress, stats=stats,
                                     **self.analysis_options)
            _umap_ready.set()
            return umap

        def render(umap):
            self.analyses[map_key] = umap
            if self.layer.value == layer and MAP_METHODS[self.map_method.value] == "umap":
                self._draw(umap, layer)

        self.submit(work, render, busy=busy)

    def rows(self) -> list[dict]:
        """Per-layer circularity statistics (see :meth:`CircularAnalysis.rows`)."""
        return self.result.rows() if self.result is not None else []

    # -- internals ------------------------------------------------------------------------------

    def _show(self, key: tuple) -> None:
        self.result = self.analyses[(*key, "pca")]
        self.render_layer()

    def _key(self, cycle, inner: str) -> tuple:
        items = load_cycle(cycle, self.analysis_options.get("templates")).items
        name = cycle if isinstance(cycle, str) else "custom"
        return (name, items, inner)

    def _draw(self, shown: CircularAnalysis, layer: int) -> None:
        """Map of ``shown`` (PCA, UMAP or circle probe) beside the all-layer statistics."""
        with_stats = self.result
        self.map_fig.draw(circular_scatter(shown, layer))
        if self._curve_of is with_stats:
            self.curve_fig.relayout(shapes=layer_marker(layer))
        else:
            self.curve_fig.draw(circularity_curve(with_stats, layer))
            self._curve_of = with_stats
        caveat = inner_note(self.session, with_stats.inner, layer)
        self.summary.value = f"<code>{with_stats.summary(layer)}</code>" + (
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
