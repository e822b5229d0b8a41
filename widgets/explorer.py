"""Explorer: every view in tabs over one session and one direction registry.

>>> Explorer(Session.load())                                        # doctest: +SKIP
"""

from __future__ import annotations

import html
import re
import threading
import time
import warnings
from pathlib import Path

import ipywidgets as W

from reprlab import Session
from reprlab.loading import cache_root

from .base import row
from .circular import CircularMap
from .help import Text
from .lens import LensView
from .probe_curves import ProbeCurves
from .projection import ConceptProjection
from .registry import DirectionManager
from .steering import SteeringPanel

#: Tabs as wide as their titles (ipywidgets gives each 144 px, so five tabs cut the titles
#: short in JupyterLab at 1024 x 768 with the file browser open).
TAB_CSS = """<style>
.reprlab-explorer > .widget-tab > .lm-TabBar .lm-TabBar-tab { flex: 0 1 auto; min-width: 0; }
</style>"""

TABS = (("Probe curves", ProbeCurves), ("Concept directions", ConceptProjection),
        ("Circular features", CircularMap), ("Steering", SteeringPanel), ("Lens", LensView))


class Explorer(W.VBox):
    """The whole product in one cell.

    Views are built when their tab is first opened (so opening the Explorer costs one view's
    work, not five). A probe's "Use as direction" lands in the shared registry, and
    "→ Steering" sends it to the steering tab in one click. The model box loads another model
    (HF id, local folder, .gguf); if that fails, the error shows and the current session stays.
    Registered directions are carried over to a new model of the same width (when "keep
    directions" is ticked), else saved to a file first; Save / Load keep the registry on disk.
    """

    def __init__(self, session: Session | None = None, *, background: bool = True):
        super().__init__()
        self.add_class("reprlab-explorer")
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
                                            "(directions move along when 'keep directions' is "
                                            "ticked and the widths match, else go to a file)")
        self.reset_button = W.Button(description="Reset…", icon="undo",
                                     tooltip="clear every view's results and start the views "
                                             "over; keeps the model and your directions")
        self.confirm_reset = W.Button(description="Yes, reset", button_style="warning",
                                      tooltip="clear every tab's results now",
                                      layout=W.Layout(display="none"))
        self.cancel_reset = W.Button(description="Cancel", tooltip="keep everything as it is",
                                     layout=W.Layout(display="none"))
        self.model_status = W.HTML()
        self.manager = DirectionManager(self.session)
        self.registry_box = W.Accordion(children=[self.manager], selected_index=None)
        self.registry_box.set_title(0, "Directions: rename, remove")
        # a ToggleButton, not a Checkbox: a described Checkbox shows its description, never the
        # tooltip, as its title (ipywidgets 8)
        self.carry = W.ToggleButton(value=True, description="keep directions", icon="check",
                                    tooltip="carry the registered directions over to the new "
                                            "model when its width matches (else they are saved "
                                            "to a file)",
                                    layout=W.Layout(width="auto", min_width="150px"))
        self.registry_path = Text(value="directions.safetensors", description="directions",
                                    tooltip="file to save the registry to or load it from",
                                    layout=W.Layout(width="340px"))
        self.save_button = W.Button(description="Save", icon="save", layout=W.Layout(width="80px"),
                                    tooltip="save every registered direction to this file")
        self.load_directions_button = W.Button(
            description="Load", icon="folder-open", layout=W.Layout(width="80px"),
            tooltip="add the directions saved in this file to the registry")
        self.tabs = W.Tab(children=[W.VBox() for _ in TABS])
        for i, (title, _) in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.children = [
            W.HTML(TAB_CSS, layout=W.Layout(display="none")),
            self.header,
            row(self.model_box, self.load_button, self.reset_button, self.confirm_reset,
                self.cancel_reset),
            row(self.carry, self.registry_path, self.save_button, self.load_directions_button),
            self.model_status, self.registry_box, self.tabs,
        ]
        self.save_button.on_click(lambda _: self.save_directions(self.registry_path.value))
        self.load_directions_button.on_click(
            lambda _: self.load_directions(self.registry_path.value))
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
                extra = [row(send, self.send_status)]
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
            note = self.use_session(session, carry=self.carry.value)
            self.model_status.value = f"Loaded {html.escape(session.name)}. {html.escape(note)}"

        if self.background:
            threading.Thread(target=work, daemon=True, name="reprlab-load").start()
        else:
            work()

    def use_session(self, session: Session, carry: bool = True) -> str:
        """Switch every view to ``session`` (views are rebuilt lazily); returns what happened
        to the registered directions. They move to ``session`` when ``carry`` and the widths
        match, else they are saved to a file in the cache folder: none is silently lost."""
        note = self._carry_directions(session, carry)
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
        return note

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

    def _carry_directions(self, new: Session, carry: bool) -> str:
        old = list(self.session.directions)
        if not old or new.directions is self.session.directions:
            return ""
        if carry and new.width == self.session.width:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                moved = [new.directions.add_new(d.adopted_by(new)) for d in old]
            return (f"Carried {len(moved)} directions over from {self.session.name} (same width "
                    f"{new.width}; whether their meaning transfers is for you to check).")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = cache_root() / "directions" / f"{self.session.name.replace('/', '_')}-{stamp}" \
            ".safetensors"
        self.session.directions.save(path)
        why = "'keep directions' is off" if not carry else \
            f"width {self.session.width} does not fit width {new.width}"
        return (f"{len(old)} directions of {self.session.name} were not carried over ({why}); "
                f"they are saved in {path}.")

    # -- the registry on disk ------------------------------------------------------------------

    def save_directions(self, path: str | Path) -> Path | None:
        """Save the registry to ``path``; the result or error shows in the status line."""
        try:
            path = self.session.directions.save(Path(path).expanduser())
        except Exception as err:
            self._error("Could not save", err)
            return None
        self.model_status.value = html.escape(
            f"Saved {len(self.session.directions)} directions to {path.resolve()}.")
        return path

    def load_directions(self, path: str | Path) -> list | None:
        """Add the directions saved in ``path`` to the registry (never replacing one)."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = self.session.directions.load(Path(path).expanduser())
        except Exception as err:
            self._error("Could not load directions", err)
            return None
        names = ", ".join(d.name for d in loaded)
        notes = " ".join(str(w.message) for w in caught)
        self.model_status.value = html.escape(f"Loaded {len(loaded)} directions: {names}. {notes}")
        self.refresh_header()
        return loaded

    def _error(self, what: str, err: Exception) -> None:
        self.model_status.value = (f"<span style='color:#b00020'><b>{what}.</b> "
                                   f"{html.escape(f'{type(err).__name__}: {err}')[:600]}</span>")
