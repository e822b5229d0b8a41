"""ProbeCurves: at which layers can a linear read-out find a concept, and how sure are we?

>>> ProbeCurves(session, dataset="truth")                            # doctest: +SKIP
>>> ProbeCurves(session, texts=my_texts, labels=my_labels)          # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import re

import ipywidgets as W

from reprlab import Direction, datasets, probe_curve
from reprlab.activations import common_words, texts_without, validate_texts
from reprlab.probes import check_labels

from .base import View, pick_layer, row
from .figures import layer_marker, probe_curve_figure, probe_layer_figure
from .help import Combobox, Dropdown, Text, caption, explain
from .plot import Plot

BUILTIN = ("sentiment", "truth")
YOUR_DATA = "your data"
POSITIONS = ("last", "mean", "word")


class ProbeCurves(View):
    """Probe score per layer with fold spread and control; circled layers are above chance
    after correcting for choosing among all layers (standardized max-T permutation test, see
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
        self.dataset = Dropdown(options=options, value=default, description="data",
                                layout=W.Layout(width="220px"))
        self.position = W.ToggleButtons(options=POSITIONS, value=at if at in POSITIONS else "word",
                                        description="read at", style={"button_width": "70px"})
        self.word = Combobox(value="" if at in POSITIONS else at,
                               placeholder="word in every text",
                               ensure_option=False, continuous_update=False,
                               layout=W.Layout(width="160px", display="none"))
        self.layer = W.IntSlider(description="layer", min=0, max=1, continuous_update=True,
                                 layout=W.Layout(width="420px"))
        self.upload = W.FileUpload(accept=".csv", multiple=False, description="CSV…",
                                   tooltip="your own labelled texts: a CSV file with 'text' and "
                                           "'label' columns (optional 'group')",
                                   layout=W.Layout(width="auto", min_width="130px"))
        self.name = Text(placeholder="direction name", layout=W.Layout(width="180px"))
        self.use = W.Button(description="Use as direction", icon="arrow-right",
                            tooltip="add this layer's probe to the session's direction registry",
                            layout=W.Layout(width="auto", min_width="170px"))
        self.curve_fig = Plot(height=380)
        self.layer_fig = Plot(height=380)
        self.curve_fig.on_click(lambda point: pick_layer(self.layer, point))
        for control, key in ((self.dataset, "dataset"), (self.position, "read_at"),
                             (self.word, "word"), (self.layer, "layer"), (self.name, "name")):
            explain(control, key)
        self.figure_row = W.HBox([self.curve_fig, self.layer_fig])
        self.mark_outputs()
        self.children = [
            caption("probe"),
            row(self.dataset, self.upload, self.position, self.word),
            self.notice,
            self.figure_row,
            row(self.layer, self.name, self.use),
            self.footer,
        ]
        self.dataset.observe(lambda _: self.compute(), "value")
        self.position.observe(self._on_position, "value")
        self.word.observe(lambda _: self.compute(), "value")
        self.layer.observe(lambda _: self.render_layer(), "value")
        self.use.on_click(lambda _: self.use_as_direction())
        self.upload.observe(self._on_upload, "value")
        self._show_word_box()
        self.compute()

    # -- actions --------------------------------------------------------------------------------

    def compute(self) -> None:
        """Extract activations (cached after the first time) and fit the probes."""
        texts, labels, groups = self._data()
        at = self.word.value.strip() if self.position.value == "word" else self.position.value
        if self.position.value == "word":
            self.word.options = [w for w, n in common_words(texts, 12) if n == len(texts)]
            if not self._word_fits(texts, at):
                return
        self.figure_row.layout.visibility = "visible"

        def work(progress):
            # read only (never edited in place), so no copy of the cache's tensors
            acts = self.session.activations(texts, at=at, progress=progress, copy=False)
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
        if self.figure_row.layout.visibility == "hidden":
            self.show_error(ValueError("no probe for this setting yet: the curve is hidden until "
                                       "the 'read at' choice can be computed"), stale=False)
            return None
        try:
            typed = self.name.value.strip()
            direction = Direction.from_probe(self.result, self.layer.value,
                                             name=typed or self.name.placeholder)
            if typed:  # a name the user chose never silently replaces another direction
                self.session.directions.add(direction)
            else:
                direction = self.session.directions.add_new(direction)
        except Exception as err:
            self.show_error(err, stale=False)  # the curve is still current
            return None
        self.show_info(f"Added direction '{direction.name}' ({direction.where}) to the session; "
                       "the other views can use it now.")
        return direction

    def load_csv(self, content: bytes | str, name: str = "your data") -> None:
        """Use the labelled texts of a CSV (columns ``text``, ``label``, optional ``group``)
        as "your data" and probe them."""
        try:
            self.user_data = read_labelled_csv(content)
        except ValueError as err:
            self.show_error(ValueError(f"{name}: {err}"), stale=False)
            return
        if YOUR_DATA not in self.dataset.options:
            self.dataset.options = [*self.dataset.options, YOUR_DATA]
        if self.dataset.value == YOUR_DATA:
            self.compute()
        else:
            self.dataset.value = YOUR_DATA  # triggers compute

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
        self.curve_fig.draw(probe_curve_figure(curve, self.layer.value, at=self.acts.at))
        self.render_layer()
        self.show_info(curve.summary())  # the figure's title says where it was read

    def _on_upload(self, change) -> None:
        files = change["new"]
        if files:
            self.load_csv(bytes(files[0]["content"]), files[0]["name"])

    def _on_position(self, _) -> None:
        self._show_word_box()
        self.compute()  # in word mode without a fitting word this says what the mode needs

    def _show_word_box(self) -> None:
        self.word.layout.display = "" if self.position.value == "word" else "none"

    def _word_fits(self, texts, word: str) -> bool:
        """Is ``word`` in every text? If not, hide the old curve and say what would work."""
        missing = texts_without(texts, word) if word else list(range(len(texts)))
        if not missing:
            return True
        self.figure_row.layout.visibility = "hidden"  # the old curve is not for this setting
        counts = common_words(texts, 4)
        everywhere = [w for w, n in counts if n == len(texts)]
        offer = (f"Words in all {len(texts)} texts: " + ", ".join(repr(w) for w in everywhere)
                 if everywhere else "No word occurs in every text; use 'last' or 'mean'")
        partial = ", ".join(f"{w!r} in {n}" for w, n in counts if n < len(texts))
        need = ("Type a word that occurs in every text: read at 'word' reads each text at the "
                "last occurrence of that word.")
        if word:
            need = (f"{word!r} not found in {len(missing)} of {len(texts)} texts (e.g. "
                    f"{texts[missing[0]]!r:.60}). Read at 'word' needs a word in every text.")
        message = f"{need} {offer}" + (f" (nearly: {partial})." if partial else ".")
        if word:
            self.show_error(ValueError(message))
        else:
            self.show_info(message)
        return False

    def _data(self):
        if self.dataset.value == YOUR_DATA:
            return self.user_data
        data = datasets.load(self.dataset.value)
        return list(data.texts), list(data.labels), data.groups


def read_labelled_csv(content: bytes | str):
    """``(texts, labels, groups)`` from CSV text with a header row naming ``text`` and ``label``
    (and optionally ``group``) columns."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError("the file is not UTF-8 text; save it as CSV (UTF-8)") from None
    reader = csv.DictReader(io.StringIO(content))
    rows = list(reader)
    header = reader.fieldnames or []
    for i, record in enumerate(rows):
        if None in record:  # DictReader files fields beyond the header under the key None
            raise ValueError(f"row {i + 2} has {len(header) + len(record[None])} fields but the "
                             f"header names {len(header)}: quote texts that contain commas, or "
                             "remove the extra field")
    columns = {c.strip().lower(): c for c in header}
    missing = {"text", "label"} - set(columns)
    if missing:
        raise ValueError(f"the CSV needs a header row with 'text' and 'label' columns; missing "
                         f"{sorted(missing)} (found {sorted(columns)})")
    texts = [r[columns["text"]] for r in rows]
    labels = parse_labels([r[columns["label"]] for r in rows])
    groups = [r[columns["group"]] for r in rows] if "group" in columns else None
    return _user_data(texts, labels, groups)


#: Integer labels with at most this many distinct values are classes (0/1, ratings 1-5).
MAX_INTEGER_CLASSES = 10


def parse_labels(labels: list[str]) -> list:
    """CSV label strings as the probe should see them: numbers stay numbers.

    All labels numeric: integers with at most :data:`MAX_INTEGER_CLASSES` distinct values are
    classes (ints); any other numbers (a decimal point, or many distinct integers such as
    years or counts) are floats, i.e. a regression. Anything else stays text (classes).

    >>> parse_labels(["1", "0", "1"]), parse_labels(["0.5", "2"]), parse_labels(["a", "1"])
    ([1, 0, 1], [0.5, 2.0], ['a', '1'])
    """
    stripped = [str(v).strip() for v in labels]
    try:
        numbers = [float(v) for v in stripped]
    except ValueError:
        return list(labels)
    if not all(math.isfinite(x) for x in numbers):
        return numbers  # check_labels names the rows with inf / NaN
    integral = all(re.fullmatch(r"[+-]?\d+", v) for v in stripped)
    if integral and len(set(stripped)) <= MAX_INTEGER_CLASSES:
        return [int(v) for v in stripped]
    return numbers


def _user_data(texts, labels, groups):
    if texts is None and labels is None:
        return None
    if hasattr(texts, "columns"):  # a pandas DataFrame
        data = datasets.LabelledTexts.from_frame(texts)
        texts, labels = list(data.texts), list(data.labels)
        groups = groups if groups is not None else data.groups
    if texts is None or labels is None:
        raise ValueError("pass both texts and labels (or a DataFrame with text/label columns)")
    texts, labels = validate_texts(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; pass one label per text")
    check_labels(labels, len(texts))  # one class only, None or NaN labels: refused up front
    return texts, labels, groups
