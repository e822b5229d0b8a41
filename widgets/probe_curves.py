"""ProbeCurves: at which layers can a linear read-out find a concept, and how sure are we?

>>> ProbeCurves(session, dataset="truth")                            # doctest: +SKIP
>>> ProbeCurves(session, texts=my_texts, labels=my_labels)          # doctest: +SKIP
"""

from __future__ import annotations

import ipywidgets as W

from reprlab import Direction, datasets, probe_curve
from reprlab.activations import validate_texts
from reprlab.probes import check_labels

from .base import View, pick_layer
from .figures import layer_marker, probe_curve_figure, probe_layer_figure
from .plot import Plot

BUILTIN = ("sentiment", "truth")
YOUR_DATA = "your data"
POSITIONS = ("last", "mean", "word")


class ProbeCurves(View):
    """Probe score per layer with fold spread and control; circled layers are above chance
    after correcting for choosing among all layers (max-statistic permutation test, see
    :func:`reprlab.probe_curve`), and the status line says so plainly; a movable layer marker shows
    that layer's held-out probe outputs; "Use as direction" registers the layer's probe.

    ``texts`` may be a pandas DataFrame with ``text`` and ``label`` columns.
    """

    def __init__(self, session, dataset: str | None = None, texts=None, labels=None, *,
                 groups=None, at: str = "last", background: bool = True, **probe_options):
        super().__init__(session, background=background)
        self.probe_options = probe_options
        self.user_data = _user_data(texts, labels, groups)
        options = list(BUILTIN) + ([YOUR_DATA] if self.user_data else [])
        default = dataset or (YOUR_DATA if self.user_data else BUILTIN[0])
        if default not in options:
            raise ValueError(f"unknown dataset {default!r}; choose from {options}")
        self.acts = None
        self.dataset = W.Dropdown(options=options, value=default, description="data",
                                  layout=W.Layout(width="220px"))
        self.position = W.ToggleButtons(options=POSITIONS, value=at if at in POSITIONS else "word",
                                        description="read at", style={"button_width": "60px"})
        self.word = W.Text(value="" if at in POSITIONS else at, placeholder="word in every text",
                           layout=W.Layout(width="160px", display="none"))
        self.layer = W.IntSlider(description="layer", min=0, max=1, continuous_update=True,
                                 layout=W.Layout(width="420px"))
        self.name = W.Text(placeholder="direction name", layout=W.Layout(width="180px"))
        self.use = W.Button(description="Use as direction", icon="arrow-right",
                            tooltip="add this layer's probe to the session's direction registry")
        self.curve_fig = Plot(height=380)
        self.layer_fig = Plot(height=380)
        self.curve_fig.on_click(lambda point: pick_layer(self.layer, point))
        self.children = [
            W.HBox([self.dataset, self.position, self.word]),
            W.HBox([self.curve_fig, self.layer_fig]),
            W.HBox([self.layer, self.name, self.use]),
            self.footer,
        ]
        self.dataset.observe(lambda _: self.compute(), "value")
        self.position.observe(self._on_position, "value")
        self.word.observe(lambda _: self.compute(), "value")
        self.layer.observe(lambda _: self.render_layer(), "value")
        self.use.on_click(lambda _: self.use_as_direction())
        self._show_word_box()
        self.compute()

    # -- actions --------------------------------------------------------------------------------

    def compute(self) -> None:
        """Extract activations (cached after the first time) and fit the probes."""
        texts, labels, groups = self._data()
        at = self.word.value.strip() if self.position.value == "word" else self.position.value
        if not at:
            self.show_info("Type a word that appears in every text.")
            return

        def work(progress):
            acts = self.session.activations(texts, at=at, progress=progress)
            return acts, probe_curve(acts, labels, groups=groups, **self.probe_options)

        self.submit(work, self._render, busy=f"Reading {len(texts)} texts and fitting probes…")

    def render_layer(self) -> None:
        """Redraw the layer marker and the layer's held-out outputs (no model call)."""
        if self.result is None:
            return
        layer = self.layer.value
        self.layer_fig.draw(probe_layer_figure(self.result, layer))
        self.curve_fig.relayout(shapes=layer_marker(layer))
        self.name.placeholder = f"{self.dataset.value}@{layer}"

    def use_as_direction(self) -> Direction | None:
        """Register the chosen layer's probe as a Direction in ``session.directions``."""
        if self.result is None:
            self.show_info("No probe yet: wait for the curve.")
            return None
        try:
            typed = self.name.value.strip()
            direction = Direction.from_probe(self.result, self.layer.value,
                                             name=typed or self.name.placeholder)
            if typed:  # a name the user chose never silently replaces another direction
                self.session.directions.add(direction, replace=False)
            else:
                direction = self.session.directions.add_new(direction)
        except Exception as err:
            self.show_error(err)
            return None
        self.show_info(f"Added direction '{direction.name}' ({direction.where}) to the session; "
                       "the other views can use it now.")
        return direction

    def rows(self) -> list[dict]:
        """Per-layer score, fold spread, control and selectivity."""
        return self.result.rows() if self.result is not None else []

    # -- internals ------------------------------------------------------------------------------

    def _render(self, value) -> None:
        self.acts, curve = value
        first = self.result is None
        self.result = curve
        layers = curve.layers
        with self.layer.hold_trait_notifications():
            self.layer.min, self.layer.max = layers[0], layers[-1]
            if first or self.layer.value not in layers:
                self.layer.value = curve.best_layer
        self.curve_fig.draw(probe_curve_figure(curve, self.layer.value))
        self.render_layer()
        self.show_info(curve.summary())

    def _on_position(self, _) -> None:
        self._show_word_box()
        if self.position.value != "word" or self.word.value.strip():
            self.compute()

    def _show_word_box(self) -> None:
        self.word.layout.display = "" if self.position.value == "word" else "none"

    def _data(self):
        if self.dataset.value == YOUR_DATA:
            return self.user_data
        data = datasets.load(self.dataset.value)
        return list(data.texts), list(data.labels), data.groups


def _user_data(texts, labels, groups):
    if texts is None and labels is None:
        return None
    if hasattr(texts, "columns"):  # a pandas DataFrame
        frame = texts
        missing = {"text", "label"} - set(frame.columns)
        if missing:
            raise ValueError(f"the DataFrame needs 'text' and 'label' columns; missing {missing}")
        texts, labels = list(frame["text"]), list(frame["label"])
        if groups is None and "group" in frame.columns:
            groups = list(frame["group"])
    if texts is None or labels is None:
        raise ValueError("pass both texts and labels (or a DataFrame with text/label columns)")
    texts, labels = validate_texts(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; pass one label per text")
    check_labels(labels, len(texts))  # one class only, None or NaN labels: refused up front
    return texts, labels, groups
