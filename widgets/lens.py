"""LensView: what each layer would say next, token by token, and when the model decides.

>>> LensView(session, prompt="The capital of France is")            # doctest: +SKIP
"""

from __future__ import annotations

import ipywidgets as W

from reprlab.jacobian_lens import fit_jacobian_lens
from reprlab.lens_readout import read_out
from reprlab.lenses import LENSES, lens
from reprlab.translators import lens_path
from reprlab.tuned_lens import fit_tuned_lens

from .base import View, row
from .help import Dropdown, Text, caption, explain
from .lens_figures import SHADES, Column, lens_grid, readout_table, top_table
from .plot import Plot

DEFAULT_PROMPT = "The capital of France is"
FITS = {"tuned": fit_tuned_lens, "jacobian": fit_jacobian_lens}
FIT_MINUTES = {"tuned": 10, "jacobian": 10}  # measured on 2 shared CPU cores (see the fits)
NO_DIRECTION = "(none)"


class LensView(View):
    """A prompt's layer x token grid through a lens (logit now), each cell its top token.

    Shading (top-1 probability, KL to the final distribution, entropy, a target token's
    probability) and the pinned cell redraw from the cached result; a new prompt, lens or
    target runs the model once. "Generate" adds one column per token the model writes, as it
    arrives. The selected registry direction is shown in words: the tokens it promotes and
    suppresses through the same lens, beside random directions.
    """

    def __init__(self, session, prompt: str = DEFAULT_PROMPT, *, background: bool = True,
                 fit_options: dict | None = None):
        super().__init__(session, background=background)
        self.fit_options = dict(fit_options or {})  # passed on to fit_tuned/jacobian_lens
        self.results: dict[tuple, object] = {}   # (text, lens, target) -> LensResult
        self.readouts: dict[tuple, object] = {}  # (direction, lens) -> LensReadOut
        self.columns: list[Column] = []
        self.generated_from: int | None = None
        self.selected: tuple[int, int] | None = None
        self.prompt = Text(value=prompt, description="prompt", continuous_update=False,
                           layout=W.Layout(width="96%", max_width="560px"))
        self.lens_kind = W.ToggleButtons(options=list(LENSES), value="logit", description="lens",
                                         style={"button_width": "90px"})
        self.fit_button = W.Button(description="Fit", icon="cogs", button_style="info",
                                   layout=W.Layout(width="auto", min_width="150px",
                                                   display="none"))
        self.shade = W.ToggleButtons(options=list(SHADES), value="probability",
                                     description="shade", style={"button_width": "100px"})
        self.target = Text(value="", placeholder=" Paris", description="target",
                           continuous_update=False, layout=W.Layout(width="220px"))
        self.new_tokens = W.BoundedIntText(value=8, min=1, max=64, description="tokens",
                                           layout=W.Layout(width="150px"))
        self.generate_button = W.Button(description="Generate", icon="play",
                                        layout=W.Layout(width="auto", min_width="110px"))
        self.direction = Dropdown(options=[NO_DIRECTION], value=NO_DIRECTION,
                                  description="direction", layout=W.Layout(width="260px"))
        for control, key in ((self.prompt, "lens_prompt"), (self.lens_kind, "lens"),
                             (self.shade, "shade"), (self.target, "target"),
                             (self.new_tokens, "lens_tokens"),
                             (self.generate_button, "generate"), (self.fit_button, "fit"),
                             (self.direction, "lens_direction")):
            explain(control, key)
        self.grid = Plot(height=640)
        self.grid.on_click(self._on_click)
        self.cell = W.HTML(layout=W.Layout(margin="0 24px 8px 0"))
        self.words = W.HTML()
        self.summary = W.HTML()
        self.mark_outputs(self.summary, self.cell)
        self.children = [
            caption("lens"),
            self.prompt,
            row(self.lens_kind, self.fit_button, self.target),
            row(self.shade),
            row(self.new_tokens, self.generate_button, self.direction),
            self.notice,
            self.grid,
            W.HBox([self.cell, self.words], layout=W.Layout(flex_flow="row wrap")),
            self.summary,
            self.footer,
        ]
        self.prompt.observe(lambda _: self.compute(), "value")
        self.lens_kind.observe(lambda _: self.compute(), "value")
        self.target.observe(lambda _: self.compute(), "value")
        self.shade.observe(lambda _: self.render(), "value")
        self.generate_button.on_click(lambda _: self.generate())
        self.fit_button.on_click(lambda _: self.fit())
        self.direction.observe(lambda _: self.compute(), "value")
        self.follow_registry()
        self.on_registry("init", None)
        self.compute()

    # -- actions --------------------------------------------------------------------------------

    def compute(self) -> None:
        """The lens of every token of the prompt at every layer and the chosen direction in
        words (each cached per prompt, lens and target or direction); drops generated
        columns. Everything cached redraws at once, without a model call."""
        prompt, kind, target = self.prompt.value, self.lens_kind.value, self.target.value.strip()
        if not prompt.strip():
            self.show_error(ValueError("the prompt is empty: type a text for the model to read"))
            return
        if kind in FITS and not lens_path(self.session, kind).exists():
            self._offer_fit(kind)
            return
        self.fit_button.layout.display = "none"
        key = (prompt, kind, self.target.value if target else "")
        name = self.direction.value
        word_key = None if name in (None, NO_DIRECTION) else (name, kind)
        if key in self.results and (word_key is None or word_key in self.readouts):
            self._show(key, word_key)
            return
        direction = None if word_key is None else self.session.directions[name]

        def work(progress):
            if key not in self.results:
                self.results[key] = lens(self.session, [prompt], lens=kind, progress=progress,
                                         targets=[self.target.value] if target else None)
            if word_key is not None and word_key not in self.readouts:
                self.readouts[word_key] = read_out(self.session, direction, lens=kind,
                                                   progress=progress)

        self.submit(work, lambda _: self._show(key, word_key),
                    busy="Reading every layer of the prompt through the lens…")

    def fit(self) -> None:
        """Fit the selected lens for this model (minutes; progress below), then show it; a
        second press cancels, and a cancelled fit saves nothing."""
        kind = self.lens_kind.value
        if self.fit_button.description.startswith("Cancel"):
            with self._lock:
                self._request += 1  # the fit's next progress call stops it
            self.show_current()
            self.progress.layout.visibility = "hidden"
            self._offer_fit(kind, note="Fit cancelled; nothing was saved. ")
            return
        self.fit_button.description, self.fit_button.icon = "Cancel fit", "stop"

        def work(progress):
            return FITS[kind](self.session, progress=progress, **self.fit_options)

        def render(fitted):
            self.fit_button.layout.display = "none"
            self.compute()

        self.submit(work, render, busy=f"Fitting the {kind} lens (about {FIT_MINUTES[kind]} min "
                                       "on 2 CPU cores; press Cancel fit to stop)…")

    def generate(self) -> None:
        """Let the model continue the prompt, adding one grid column per new token."""
        if self.result is None:
            self.show_info("Wait for the prompt's grid first.")
            return
        prompt, kind, target = self.prompt.value, self.lens_kind.value, self.target.value
        n = int(self.new_tokens.value)
        base = [(self.result, r) for r in range(self.result.n_rows)]
        targets = [target] if target.strip() else None

        def work(progress):
            text, columns = prompt, list(base)
            for i, token in enumerate(self.session.stream(prompt, max_new_tokens=n)):
                text += token.text
                if not token.text:
                    continue  # part of a character: it arrives with the next token
                step = lens(self.session, [text], lens=kind, positions=[-1], targets=targets)
                columns.append((step, 0))
                progress(i + 1, n, list(columns))
            return columns

        def preview(columns):
            self._set_columns(columns, generated_from=len(base))

        def render(columns):
            self._set_columns(columns, generated_from=len(base))

        self.submit(work, render, busy="Generating; each new token adds a column…",
                    preview=preview)

    def render(self) -> None:
        """Redraw the grid and the pinned cell from the cached columns (no model call)."""
        if not self.columns:
            return
        self.grid.draw(lens_grid(self.columns, self.shade.value, self.selected,
                                 self.generated_from))
        if self.selected is not None:
            c, layer = self.selected
            self.cell.value = top_table(self.columns[c], layer)
        self.summary.value = f"<code>{self._summary()}</code>"

    def select(self, column: int, layer: int) -> None:
        """Pin the top-10 table of one cell (as a click on it does)."""
        if not 0 <= column < len(self.columns) or layer not in self.columns[0][0].layers:
            raise ValueError(f"no cell at column {column}, layer {layer}")
        self.selected = (column, layer)
        self.render()

    def rows(self) -> list[dict]:
        """One dict per layer x grid column (see :meth:`LensResult.rows`), with the column
        index and whether the model wrote that token."""
        out, rows_of = [], {}
        for c, (result, r) in enumerate(self.columns):
            if id(result) not in rows_of:  # the prompt's columns share one result
                rows_of[id(result)] = result.rows()
            for entry in rows_of[id(result)]:
                if entry["position"] == int(result.position[r]) and \
                        entry["text_index"] == int(result.text_index[r]):
                    generated = self.generated_from is not None and c >= self.generated_from
                    out.append({"column": c, "generated": generated, **entry})
        return out

    def on_registry(self, event: str, name: str | None) -> None:
        names = [NO_DIRECTION, *self.session.directions.names()]
        current = self.direction.value
        self.direction.options = names
        self.direction.value = current if current in names else NO_DIRECTION
        if event != "init" and self.direction.value != current:
            self.compute()

    # -- internals ------------------------------------------------------------------------------

    def _show(self, key: tuple, word_key: tuple | None) -> None:
        self.words.value = readout_table(self.readouts[word_key]) if word_key else (
            "<div style='color:#555'>Pick a direction to see it in words (build one in Probe "
            "curves or Concept directions).</div>")
        result = self.results[key]
        if result is not self.result or self.generated_from is not None:
            self._use(result)
        else:
            self.render()

    def _offer_fit(self, kind: str, note: str = "") -> None:
        self.fit_button.description, self.fit_button.icon = f"Fit {kind} lens", "cogs"
        self.fit_button.layout.display = ""
        self.show_info(f"{note}No {kind} lens is fitted for {self.session.name} yet: press "
                       f"'Fit {kind} lens' (about {FIT_MINUTES[kind]} min on 2 CPU cores, "
                       "once; it is cached) or pick the logit lens.")

    def _use(self, result) -> None:
        self.result = result
        self._set_columns([(result, r) for r in range(result.n_rows)], generated_from=None)

    def _set_columns(self, columns: list[Column], generated_from: int | None) -> None:
        self.columns, self.generated_from = columns, generated_from
        layers = columns[0][0].layers
        if self.selected is None or self.selected[0] >= len(columns) or \
                self.selected[1] not in layers:
            self.selected = (len(columns) - 1, layers[len(layers) // 2])
        self.render()

    def _on_click(self, point: dict) -> None:
        try:
            self.select(int(point["x"]), int(point["y"]))
        except (KeyError, TypeError, ValueError):
            return  # a click on the legend or outside the cells

    def _summary(self) -> str:
        commits = [r.commits_at()[row] for r, row in self.columns]
        tokens = [r.row_token(row) for r, row in self.columns]
        last = self.columns[-1][0]
        settled = [c for c in commits if c is not None]
        where = (f"the model's top token settles at layer {sorted(settled)[len(settled) // 2]} "
                 f"(median over {len(settled)} of {len(commits)} tokens)" if settled
                 else "no token's top prediction settles before the output")
        return (f"{self.lens_kind.value} lens, {len(tokens)} tokens: {where}; after "
                f"{tokens[-1]!r} the model says {last.top_tokens[-1][self.columns[-1][1]][0]!r}.")
