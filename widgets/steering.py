"""SteeringPanel: add (or ablate) a direction in the residual stream and regenerate live.

>>> SteeringPanel(session)                                          # doctest: +SKIP
"""

from __future__ import annotations

import html
import re
import threading

import ipywidgets as W

from reprlab import Direction
from reprlab.numbers import fmt_signed
from reprlab.steering import Steer
from reprlab.steering_comparison import SteeringComparison, compare_steering

from .base import View, registry_target, row
from .figures import CHANGED_STYLE, NEGATIVE, POSITIVE, fmt
from .help import Dropdown, Text, caption, explain

DEFAULT_PROMPT = "I think the movie was"


class SteeringPanel(View):
    """Baseline and steered text side by side (same seed), the steered text streaming in with
    changed tokens highlighted, and the logit shift of the first new token.

    Slider changes are debounced; a new setting cancels the generation in flight, so only the
    latest setting ever writes the output.
    """

    def __init__(self, session, direction: Direction | None = None, *, background: bool = True,
                 debounce: float = 0.25):
        super().__init__(session, background=background)
        if direction is not None:  # never replaces another direction: a taken name gets -2
            direction = session.directions.add_new(direction)
        self.debounce_s = debounce if background else 0.0
        self._timer: threading.Timer | None = None
        self._syncing = False  # set while one change moves several controls: one regenerate
        self.result: SteeringComparison | None = None
        self.prompt = Text(value=DEFAULT_PROMPT, description="prompt",
                           layout=W.Layout(width="98%"), continuous_update=False)
        names = session.directions.names()
        self.direction = Dropdown(options=names, description="direction",
                                  value=names[-1] if names else None,  # the newest
                                  layout=W.Layout(width="320px"))
        if direction is not None:
            self.direction.value = direction.name
        self.mode = W.ToggleButtons(options=["add", "ablate"], value="add", description="mode",
                                    style={"button_width": "80px"})
        self.layer = W.IntSlider(description="layer", min=0, max=session.n_blocks,
                                 value=session.n_blocks // 2, continuous_update=False)
        # The slider's own readout would clip a typed 1000 to 1.00 without a word: a box of
        # ours takes typed values, and says when and to what it clipped one.
        self.alpha = W.FloatSlider(description="alpha", min=-1.0, max=1.0, step=0.05, value=0.25,
                                   continuous_update=False, readout=False)
        self.alpha_box = W.Text(value=fmt_signed(self.alpha.value), continuous_update=False,
                                layout=W.Layout(width="70px"))
        self.alpha_note = W.HTML()
        self.max_tokens = W.IntSlider(description="tokens", min=5, max=120, value=30,
                                      continuous_update=False)
        # A Text, parsed strictly: the browser's IntText silently turned "1e3" into 13.
        self.seed = Text(value="0", description="seed", layout=W.Layout(width="160px"),
                         continuous_update=False)
        self.temperature = W.FloatSlider(description="temp.", min=0.0, max=1.5, step=0.1,
                                         value=0.0, continuous_update=False)
        self.unit = W.HTML()
        self.baseline = W.HTML(layout=W.Layout(width="49%"))
        self.steered = W.HTML(layout=W.Layout(width="49%"))
        self.shift = W.HTML()
        for control, key in ((self.prompt, "prompt"), (self.direction, "direction"),
                             (self.mode, "mode"), (self.layer, "layer"), (self.alpha, "alpha"),
                             (self.max_tokens, "tokens"), (self.seed, "seed"),
                             (self.temperature, "temperature"), (self.alpha_box, "alpha_box")):
            explain(control, key)
        self.mark_outputs(self.baseline, self.steered, self.shift)
        self.children = [
            caption("steering"),
            self.prompt,
            self.notice,  # errors (an empty prompt) and "computing ..." right under the prompt
            row(self.direction, self.mode),
            row(self.layer, self.alpha, self.alpha_box, self.unit),
            self.alpha_note,
            row(self.max_tokens, self.temperature, self.seed),
            W.HBox([self.baseline, self.steered]),
            self.shift,
            self.footer,
        ]
        self.alpha_box.observe(self._on_alpha_typed, "value")
        self.alpha.observe(self._on_alpha, "value")
        self.direction.observe(self._on_direction, "value")  # first: moves the layer along
        for control in (self.prompt, self.direction, self.mode, self.layer, self.alpha,
                        self.max_tokens, self.seed, self.temperature):
            control.observe(lambda _: self._syncing or self.schedule(), "value")
        self.follow_registry()
        if not session.directions.names():
            self._build_default()
        else:
            self._on_direction(None)
            self.schedule()

    # -- actions --------------------------------------------------------------------------------

    def schedule(self) -> None:
        """Regenerate after ``debounce`` seconds of quiet (slider drags coalesce)."""
        if self._timer is not None:
            self._timer.cancel()
        if self.debounce_s <= 0:
            self.regenerate()
            return
        self._timer = threading.Timer(self.debounce_s, self.regenerate)
        self._timer.daemon = True
        self._timer.start()

    def current_steer(self) -> Steer | None:
        name = self.direction.value
        if not name or name not in self.session.directions:
            return None
        return Steer(self.session.directions[name], layer=self.layer.value,
                     alpha=self.alpha.value, mode=self.mode.value)

    def regenerate(self) -> None:
        """Baseline (reused per prompt and sampling settings) and steered text, streamed."""
        steer = self.current_steer()
        if steer is None:
            self.show_info("No direction yet: build one in another view or pass direction=.")
            return
        prompt = self.prompt.value
        try:
            seed = parse_seed(self.seed.value)
        except ValueError as err:
            self.show_error(err)
            return
        options = dict(max_new_tokens=self.max_tokens.value, seed=seed,
                       temperature=self.temperature.value)
        key = (prompt, tuple(sorted(options.items())))
        last = self.result
        baseline = last.baseline if last is not None and self._key_of(last) == key else None
        before = last.shift.before if last is not None and last.prompt == prompt else None

        def work(progress):
            def on_token(tokens, changed):  # raises Superseded once a newer setting came in
                progress(len(tokens), options["max_new_tokens"], (tokens, changed))

            return compare_steering(self.session, prompt, steer, k=6, baseline=baseline,
                                    before=before, on_token=on_token, **options)

        def preview(partial):
            tokens, changed = partial
            self.steered.value = _panel("steered", tokens, changed)

        self.submit(work, self._render, busy=f"Generating with {steer!r}…", preview=preview)

    @property
    def baseline_tokens(self) -> list:
        """The unsteered tokens of the comparison shown."""
        return list(self.result.baseline) if self.result is not None else []

    def rows(self) -> list[dict]:
        """The baseline and steered texts, then the logit shift of the first new token."""
        return self.result.rows() if self.result is not None else []

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _key_of(result: SteeringComparison) -> tuple:
        options = {k: v for k, v in result.options.items() if k != "top_p"}
        return (result.prompt, tuple(sorted(options.items())))

    def _render(self, result: SteeringComparison) -> None:
        self.result = result
        self.baseline.value = _panel("baseline", result.baseline)
        self.steered.value = _panel("steered", result.steered, result.changed)
        self.shift.value = _shift_table(result.shift)
        steer = result.steer
        unit = steer.unit(self.session)
        self.unit.value = (f"<span style='color:#555'>alpha 1 = {fmt(unit)} "
                           f"(typical norm at layer {steer.layer})</span>")
        self.show_info(result.summary())

    def _build_default(self) -> None:
        layer = self.layer.value

        def work(progress):
            return Direction.from_dataset(self.session, "sentiment", layer)

        self.submit(work, self.session.directions.add_new, busy="Building a sentiment direction…")

    def _on_alpha_typed(self, change) -> None:
        """A typed alpha: taken when it parses, clipped to the slider's range with a note."""
        typed = str(change["new"]).strip()
        if typed == fmt_signed(self.alpha.value):
            return
        try:
            value = float(typed)
            if value != value:  # NaN
                raise ValueError
        except ValueError:
            self._say_alpha(f"alpha {typed!r} is not a number: type e.g. 0.5 or -0.25; "
                            f"alpha stays {fmt_signed(self.alpha.value)}.")
            self.alpha_box.value = fmt_signed(self.alpha.value)
            return
        lo, hi = self.alpha.min, self.alpha.max
        clipped = min(max(value, lo), hi)
        note = "" if clipped == value else (
            f"alpha {typed} is outside the range {fmt(lo)} to {fmt(hi)}: clipped to "
            f"{fmt_signed(clipped)}.")
        if clipped == self.alpha.value:
            self.alpha_box.value = fmt_signed(clipped)
        else:
            self.alpha.value = clipped  # regenerates; the box follows in _on_alpha
        self._say_alpha(note)

    def _on_alpha(self, change) -> None:
        self.alpha_box.value = fmt_signed(change["new"])
        self._say_alpha("")

    def _say_alpha(self, text: str) -> None:
        self.alpha_note.value = (f"<span style='color:#8a5a00'>{html.escape(text)}</span>"
                                 if text else "")

    def _on_direction(self, _) -> None:
        name = self.direction.value
        if name in self.session.directions:
            d = self.session.directions[name]
            if d.layer is not None and d.layer != self.layer.value:
                self._syncing, was = True, self._syncing
                try:
                    self.layer.value = d.layer  # the direction's change schedules once
                finally:
                    self._syncing = was

    def on_registry(self, event: str, name: str | None) -> None:
        names = self.session.directions.names()
        target = registry_target(names, self.direction.value, event, name)
        self._syncing = True
        try:
            self.direction.options = names
            self.direction.value = target
        finally:
            self._syncing = False
        self.schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().close()


def _panel(title: str, tokens, changed=None) -> str:
    spans = []
    for i, token in enumerate(tokens):
        text = html.escape(token.text).replace("\n", "<br>")
        if changed is not None and changed[i]:
            text = f"<mark class='reprlab-changed' style='{CHANGED_STYLE}'>{text}</mark>"
        spans.append(text)
    key = "" if changed is None else (
        f" <span style='font-weight:normal;color:#555;font-size:90%'>(<span "
        f"style='{CHANGED_STYLE}'>underlined bold</span> = differs from the baseline)</span>")
    return (f"<div style='border:1px solid #ddd;border-radius:4px;padding:6px;min-height:4em;"
            f"white-space:pre-wrap;overflow-wrap:anywhere'><b>{title}</b>{key}<br>"
            f"{''.join(spans)}</div>")


def parse_seed(text) -> int:
    """A seed typed by a person: digits only ("1e3" or "4.5" are refused, never guessed).

    >>> parse_seed(" 42 ")
    42
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    cleaned = str(text).strip()
    if not re.fullmatch(r"\d+", cleaned):
        raise ValueError(f"seed {str(text)!r} is not a whole number: type digits only, e.g. "
                         "0 or 1000")
    return int(cleaned)


def _shift_table(shift) -> str:
    def rows(items, sign):
        return "".join(
            f"<tr><td><code>{html.escape(repr(tok))}</code></td><td>{fmt(before)}</td>"
            f"<td>{fmt(after)}</td><td style='color:{POSITIVE if sign > 0 else NEGATIVE}'>"
            f"{'▲' if sign > 0 else '▼'} {'+' if after >= before else ''}{fmt(after - before)}"
            "</td></tr>"
            for tok, before, after in items
        )

    head = "<tr><th>token</th><th>before</th><th>after</th><th>change</th></tr>"
    # cells never break inside a token or a number; the two tables wrap under each other instead
    table = "<table style='white-space:nowrap;border-spacing:8px 2px'>"
    return (f"<div style='display:flex;flex-wrap:wrap;gap:4px 24px'>{table}<caption>first new "
            f"token: rose most</caption>{head}{rows(shift.rose, 1)}</table>{table}<caption>"
            "fell most</caption>"
            f"{head}{rows(shift.fell, -1)}</table></div>"
            f"<div style='color:#555'>Probabilities of the first new token without (before) and "
            f"with (after) steering. KL(steered || baseline) = {fmt(shift.kl)} nats: 0 means "
            f"steering did not change the next-token distribution.</div>")
