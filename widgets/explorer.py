"""Explorer: every view in tabs over one session and one direction registry.

>>> Explorer(Session.load())                                        # doctest: +SKIP
"""

from __future__ import annotations

import html
import threading

import ipywidgets as W

from reprlab import Session

from .circular import CircularMap
from .probe_curves import ProbeCurves
from .projection import ConceptProjection
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
                                layout=W.Layout(width="380px"))
        self.load_button = W.Button(description="Load model", icon="download")
        self.model_status = W.HTML()
        self.tabs = W.Tab(children=[W.VBox() for _ in TABS])
        for i, (title, _) in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.children = [self.header, W.HBox([self.model_box, self.load_button,
                                              self.model_status]), self.tabs]
        self.tabs.observe(self._on_tab, "selected_index")
        self.load_button.on_click(lambda _: self.load_model(self.model_box.value.strip() or None))
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
            self.views[index] = view
            extra = []
            if cls is ProbeCurves:
                send = W.Button(description="→ Steering", icon="sliders",
                                tooltip="use this layer's probe as a direction and open Steering")
                send.on_click(lambda _: self.send_to_steering())
                extra = [send]
            self.tabs.children = tuple(
                W.VBox([view, *extra]) if i == index else child
                for i, child in enumerate(self.tabs.children)
            )
        return self.views[index]

    def send_to_steering(self):
        """Register the probe at ProbeCurves' layer and open it in the Steering tab."""
        direction = self.view(0).use_as_direction()
        if direction is not None:
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
        for view in self.views.values():
            view.close()
        self.session = session
        self.views = {}
        self.tabs.children = [W.VBox() for _ in TABS]
        self._open(self.tabs.selected_index or 0)
        self.refresh_header()
