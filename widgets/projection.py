"""ConceptProjection: build or pick a concept direction, then see texts projected on it.

>>> ConceptProjection(session)                                      # doctest: +SKIP
"""

from __future__ import annotations

import re

import ipywidgets as W

from reprlab import Direction, datasets
from reprlab.checks import as_name
from reprlab.geometry import ConceptReadout, concept_readout, inner_note
from reprlab.types import INNER_PRODUCTS

from .base import View, registry_target, row
from .figures import projection_histogram, similarity_heatmap, token_html
from .help import Dropdown, Text, Textarea, caption, explain
from .plot import Plot

CONTRASTS = ("sentiment", "truth")
YOUR_PAIRS = "your word pairs (unembedding)"
DEFAULT_TEXT = "The movie was wonderful, but the ending was terrible."


def build_choices() -> dict[str, tuple]:
    """Menu label -> how to build: built-in contrast sets and counterfactual word pairs."""
    choices = {f"{name}: mean difference": ("dataset", name, "mean_difference")
               for name in CONTRASTS}
    choices.update({f"{name}: probe": ("dataset", name, "probe") for name in CONTRASTS})
    choices.update({f"pairs: {concept} (unembedding)": ("pairs", concept, None)
                    for concept in datasets.load("pairs")})
    choices[YOUR_PAIRS] = ("your pairs", None, None)
    return choices


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """Word pairs typed by a person: "king:queen, man:woman" or one "king queen" per line.

    >>> parse_pairs("king:queen, man:woman")
    [('king', 'queen'), ('man', 'woman')]
    """
    pairs = []
    for item in re.split(r"[,;\n]+", text):
        words = [w for w in re.split(r"[:\s→>-]+", item.strip()) if w]
        if not words:
            continue
        if len(words) != 2:
            raise ValueError(f"{item.strip()!r} is not a word pair: write 'from:to', e.g. "
                             "'king:queen', pairs separated by commas or new lines")
        pairs.append((words[0], words[1]))
    if not pairs:
        raise ValueError("type at least one word pair, e.g. 'king:queen, man:woman'")
    return pairs


class ConceptProjection(View):
    """Tokens of a text colored by their projection on a direction, the projections of two
    labelled sets, and a similarity heatmap of the registry's directions, under a chosen
    inner product (euclidean, standardized, causal, whitened); projections are measured
    from the mean of the reference texts, and a note says when causal is an approximation."""

    def __init__(self, session, direction: Direction | None = None, *, background: bool = True):
        if direction is not None:
            as_name(direction.name, "the direction passed to ConceptProjection")
        super().__init__(session, background=background)
        if direction is not None:  # never replaces another direction: a taken name gets -2
            direction = session.directions.add_new(direction)
        self.choices = build_choices()
        self._syncing = False
        names = session.directions.names()
        self.direction = Dropdown(options=names, description="direction",
                                  value=names[-1] if names else None,  # the newest
                                  layout=W.Layout(width="320px"))
        if direction is not None:
            self.direction.value = direction.name
        self.inner = W.ToggleButtons(options=INNER_PRODUCTS, value="euclidean",
                                     description="geometry", style={"button_width": "120px"})
        self.layer = W.IntSlider(description="layer", min=0, max=session.n_blocks,
                                 value=session.n_blocks // 2, continuous_update=False,
                                 layout=W.Layout(width="420px"))
        self.source = Dropdown(options=list(self.choices), description="build from",
                               layout=W.Layout(width="360px"))
        self.build_button = W.Button(description="Build at this layer", icon="plus",
                                     tooltip="build the chosen direction at the slider's layer "
                                             "and add it to the session",
                                     layout=W.Layout(width="auto", min_width="170px"))
        self.pairs = Textarea(placeholder="your word pairs, e.g. king:queen, man:woman, "
                                            "he:she, boy:girl, father:mother",
                                layout=W.Layout(width="60%", height="48px", display="none"))
        self.pairs_name = Text(placeholder="name (e.g. gender)", description="name",
                               layout=W.Layout(width="220px", display="none"))
        self.text = Textarea(value=DEFAULT_TEXT, layout=W.Layout(width="98%", height="56px"),
                             continuous_update=False)
        self.contrast = Dropdown(options=CONTRASTS, description="compare",
                                 layout=W.Layout(width="220px"))
        self.tokens = W.HTML(layout=W.Layout(width="98%"))
        self.hist_fig = Plot(height=340)
        self.sim_fig = Plot(height=340)
        for control, key in ((self.direction, "direction"), (self.inner, "inner"),
                             (self.layer, "layer"), (self.source, "build_from"),
                             (self.text, "text"), (self.contrast, "compare"),
                             (self.pairs, "pairs"), (self.pairs_name, "name")):
            explain(control, key)
        self.mark_outputs(self.tokens)
        self.children = [
            caption("projection"),
            row(self.direction, self.inner),
            row(self.source, self.build_button),
            row(self.pairs, self.pairs_name),
            self.layer,
            self.notice,
            self.text,
            self.tokens,
            self.contrast,
            W.HBox([self.hist_fig, self.sim_fig]),
            self.footer,
        ]
        self.build_button.on_click(lambda _: self.build())
        self.source.observe(self._on_source, "value")
        self.direction.observe(self._on_direction, "value")
        for control in (self.inner, self.layer, self.text, self.contrast):
            control.observe(lambda _: self.refresh(), "value")
        self.follow_registry()
        if not session.directions.names():
            self.build()
        else:
            self._on_direction(None)

    # -- actions --------------------------------------------------------------------------------

    def build(self) -> None:
        """Build the chosen direction (at the slider's layer) and register it."""
        kind, name, method = self.choices[self.source.value]
        layer = self.layer.value
        if kind == "your pairs":
            try:
                typed = parse_pairs(self.pairs.value)
            except ValueError as err:
                self.show_error(err, stale=False)  # what is shown is still current
                return
            name = self.pairs_name.value.strip() or "my pairs"

        def work(progress):
            if kind == "your pairs":
                return Direction.counterfactual(self.session, typed, name=name)
            if kind == "pairs":
                pairs = datasets.load("pairs")[name]
                return Direction.counterfactual(self.session, pairs, name=name)
            suffix = "" if method == "mean_difference" else f"-{method}"
            return Direction.from_dataset(self.session, name, layer, method=method,
                                          name=f"{name}@{layer}{suffix}")

        def render(direction):
            self.session.directions.add_new(direction)  # the registry listener selects it

        self.submit(work, render, busy=f"Building '{self.source.value}'…")

    def refresh(self) -> None:
        """Recompute token projections, set projections and similarities (all from cache)."""
        if not self.direction.value or self.direction.value not in self.session.directions:
            return
        d = self.session.directions[self.direction.value]
        inner, layer, text = self.inner.value, self.layer.value, self.text.value
        data = datasets.load(self.contrast.value)
        comparable = [x for x in self.session.directions if x.where == d.where]

        def work(progress):
            return concept_readout(self.session, d, text, data.texts, data.labels, layer,
                                   inner, compare=comparable, progress=progress)

        self.submit(work, self._render, busy="Projecting…")

    def rows(self) -> list[dict]:
        """Token projections of the text, then the projections of the labelled set."""
        return self.result.rows() if self.result is not None else []

    # -- internals ------------------------------------------------------------------------------

    def _render(self, result: ConceptReadout) -> None:
        self.result = result
        self.tokens.value = token_html(result.tokens) if result.tokens is not None else \
            "<i style='color:#555'>Type a text above to color its tokens.</i>"
        self.hist_fig.draw(projection_histogram(result.texts))
        d = self.session.directions[self.direction.value]
        excluded = {x.name: x.where for x in self.session.directions if x.where != d.where}
        self.sim_fig.draw(similarity_heatmap(result.similarity, excluded=excluded,
                                             where=d.where))
        note = "" if d.layer in (None, self.layer.value) else \
            f" (direction built at layer {d.layer}, read at layer {self.layer.value})"
        caveat = inner_note(self.session, self.inner.value, self.layer.value, d)
        self.show_info(f"'{d.name}': {d.method}, {d.where}{note}; projections measured from the "
                       "mean of the reference texts (built-in sentiment and truth sets)."
                       + (f" Note: {caveat}" if caveat else ""))

    def _on_source(self, _) -> None:
        shown = "" if self.choices[self.source.value][0] == "your pairs" else "none"
        self.pairs.layout.display = self.pairs_name.layout.display = shown

    def _on_direction(self, _) -> None:
        if self._syncing:
            return
        name = self.direction.value
        if name and name in self.session.directions:
            d = self.session.directions[name]
            if d.layer is not None and self.layer.value != d.layer:
                self.layer.value = d.layer  # triggers refresh
                return
        self.refresh()

    def on_registry(self, event: str, name: str | None) -> None:
        """Follow the registry: list its directions and select one that was just added."""
        names = self.session.directions.names()
        target = registry_target(names, self.direction.value, event, name)
        self._syncing = True
        try:
            self.direction.options = names
        finally:
            self._syncing = False
        if self.direction.value == target:
            self._on_direction(None)
        else:
            self.direction.value = target
