"""Explorer: every view in tabs over one session and one direction registry.

>>> Explorer(Session.load())                                        # doctest: +SKIP
"""

from __future__ import annotations

import html
import re
import threading

import ipywidgets as W

from reprlab import Session

from .circular import CircularMap
from .probe_curves import ProbeCurves
from .projection import ConceptProjection
from .registry import DirectionManager
from .steering import SteeringPanel

TABS = (("Probe curves", ProbeCurves), ("Concept directions", ConceptProjection),
        ("Circular features", CircularMap), ("Steering", SteeringPanel))


class Explorer(W.VBox):
    """The whole product in one cell.

    Views are built when their tab is first opened (so opening the Explorer costs one view's
    work, not four). A probe's "Use as direction" lands in the shared registry, and
    "→ Steering" sends it to the steering tab in one click. The model box loads another model
    (HF id, local folder, .gguf); if that fails, the error shows and the current session stays.
    """

    def __init__(self, session: Session | None = None, *, background: bool = True):
        super().__init__()
        self.background = background
        self.session = session if session is not None else Session.load()
        self.views: dict[int, W.Widget] = {}
        self.header = W.HTML()
        self.model_box = W.Text(placeholder="HF id, local folder or .gguf (empty: embedded)",
                                tooltip="another model to explore: a Hugging Face id (cached), "
                                        "a local folder, or a .gguf file",
                                layout=W.Layout(width="340px"))
        self.load_button = W.Button(description="Load model", icon="download",
                                    tooltip="load that model; every view starts over on it "
                                            "(directions belong to a model and are dropped)")
        self.reset_button = W.Button(description="Reset…", icon="undo",
                                     tooltip="clear every view's results and start the views "
                                             "over; keeps the model and your directions")
        self.confirm_reset = W.Button(description="Yes, reset", button_style="warning",
                                      layout=W.Layout(display="none"))
        self.cancel_reset = W.Button(description="Cancel", layout=W.Layout(display="none"))
        self.model_status = W.HTML()
        self.manager = DirectionManager(self.session)
        self.registry_box = W.Accordion(children=[self.manager], selected_index=None)
        self.registry_box.set_title(0, "Directions: rename, remove")
        self.tabs = W.Tab(children=[W.VBox() for _ in TABS])
        for i, (title, _) in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.children = [
            self.header,
            W.HBox([self.model_box, self.load_button, self.reset_button, self.confirm_reset,
                    self.cancel_reset]),
            self.model_status, self.registry_box, self.tabs,
        ]
        self.tabs.observe(self._on_tab, "selected_index")
        self.load_button.on_click(lambda _: self.load_model(self.model_box.value.strip() or None))
        self.reset_button.on_click(lambda _: self._ask_reset())
        self.confirm_reset.on_click(lambda _: self.reset())
        self.cancel_reset.on_click(lambda _: self._ask_reset(False))
        self._unsubscribe = self.session.directions.observe(lambda *_: self.refresh_header())
        self._open(0)
        self.refresh_header()

    # -- views ----------------------------------------------------------------------------------

    def view(self, index_or_title) -> W.Widget:
        """The view in a tab (built on first use), by index or title."""
        index = index_or_title if isinstance(index_or_title, int) else \
            [t for t, _ in TABS].index(index_or_title)
        return self._open(index)

    def _open(self, index: int) -> W.Widget:
        if index not in self.views:
            title, cls = TABS[index]
            view = cls(self.session, background=self.background)
            view.after_work.append(self.refresh_header)  # cache sizes change after work
            self.views[index] = view
            extra = []
            if cls is ProbeCurves:
                send = W.Button(description="→ Steering", icon="sliders",
                                tooltip="use this layer's probe as a direction and open Steering")
                send.on_click(lambda _: self.send_to_steering())
                self.send_status = W.HTML()
                extra = [W.HBox([send, self.send_status])]
            self.tabs.children = tuple(
                W.VBox([view, *extra]) if i == index else child
                for i, child in enumerate(self.tabs.children)
            )
        return self.views[index]

    def send_to_steering(self):
        """Register the probe at ProbeCurves' layer and open it in the Steering tab."""
        probes = self.view(0)
        direction = probes.use_as_direction()
        if direction is None:  # say why here, beside the button (the view's line says it too)
            why = html.unescape(re.sub("<[^>]+>", "", probes.status.value))
            self.send_status.value = (
                "<span style='color:#b00020'><b>Not sent to Steering.</b> "
                f"{html.escape(why)}</span>")
            return None
        self.send_status.value = ""
        steering = self.view(3)
        self.tabs.selected_index = 3
        if steering.direction.value != direction.name:
            steering.direction.value = direction.name
        return direction

    def _on_tab(self, change) -> None:
        if change["new"] is not None:
            self._open(change["new"])
        self.refresh_header()

    # -- session --------------------------------------------------------------------------------

    def refresh_header(self) -> None:
        info = self.session.info
        cached = self.session.cache_entries
        disk = self.session.cache_disk_bytes
        on_disk = f" (+{disk / 2**20:.1f} MB on disk)" if disk else ""
        self.header.value = (
            f"<div style='font-size:110%'><b>{html.escape(info.name)}</b> · {info.blocks} "
            f"blocks (hidden states 0..{info.blocks}) · width {info.width} · "
            f"{info.params / 1e6:.1f}M params · {info.device} {info.dtype}</div>"
            f"<div style='color:#555'>cache: {cached} activation sets, "
            f"{self.session.cache_bytes / 2**20:.1f} MB{on_disk} · directions: "
            f"{len(self.session.directions)}</div>"
        )

    def load_model(self, spec: str | None) -> None:
        """Load another model; on success rebuild the views, on failure keep this session."""
        self.model_status.value = f"Loading {html.escape(spec or 'the embedded model')}…"
        self.load_button.disabled = True

        def work():
            try:
                session = Session.load(spec)
            except Exception as err:  # shown in the widget; the old session stays usable
                self.model_status.value = (
                    f"<span style='color:#b00020'><b>Could not load.</b> "
                    f"{html.escape(f'{type(err).__name__}: {err}')[:600]}</span>")
                return
            finally:
                self.load_button.disabled = False
            self.use_session(session)
            self.model_status.value = f"Loaded {html.escape(session.name)}."

        if self.background:
            threading.Thread(target=work, daemon=True, name="reprlab-load").start()
        else:
            work()

    def use_session(self, session: Session) -> None:
        """Switch every view to ``session`` (views are rebuilt lazily)."""
        if session is not self.session:
            self._unsubscribe()
            self.manager.close()
            self.session = session
            self.manager = DirectionManager(session)
            self.registry_box.children = [self.manager]
            self._unsubscribe = session.directions.observe(lambda *_: self.refresh_header())
        for view in self.views.values():
            view.close()
        self.views = {}
        self.tabs.children = [W.VBox() for _ in TABS]
        self._open(self.tabs.selected_index or 0)
        self.refresh_header()

    def reset(self) -> None:
        """Clear every view's results and start the views over on the same session; the
        direction registry (and the activation cache) stay."""
        self._ask_reset(False)
        self.use_session(self.session)
        self.model_status.value = (f"Reset: results cleared; {len(self.session.directions)} "
                                   "directions kept.")

    def _ask_reset(self, show: bool = True) -> None:
        for button in (self.confirm_reset, self.cancel_reset):
            button.layout.display = "" if show else "none"
        self.model_status.value = (
            "Clear the results of every tab? Your directions and the model stay." if show else "")
