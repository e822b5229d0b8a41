"""DirectionManager: list, rename and remove the session's directions from the UI.

>>> DirectionManager(session)                                       # doctest: +SKIP
"""

from __future__ import annotations

import html

import ipywidgets as W

from reprlab.checks import as_name

from .help import Select


class DirectionManager(W.VBox):
    """The session's direction registry as a list, with Rename and Remove (Remove asks first).

    It follows the registry, so directions built in any view show up here at once.
    """

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.list = Select(options=[], rows=5, description="directions",
                             tooltip="every direction this session holds; views share them",
                             layout=W.Layout(width="420px"))
        self.new_name = W.Text(placeholder="new name", layout=W.Layout(width="180px"),
                               tooltip="type the new name, then click Rename")
        self.rename_button = W.Button(description="Rename", icon="pencil",
                                      tooltip="give the selected direction the typed name")
        self.remove_button = W.Button(description="Remove…", icon="trash",
                                      tooltip="remove the selected direction (asks first)")
        self.confirm = W.Button(description="Yes, remove", button_style="danger",
                                tooltip="remove the selected direction now (cannot be undone)",
                                layout=W.Layout(display="none"))
        self.cancel = W.Button(description="Cancel", tooltip="keep the direction",
                               layout=W.Layout(display="none"))
        self.status = W.HTML()
        self.children = [
            W.HBox([self.list, W.VBox([W.HBox([self.new_name, self.rename_button]),
                                       W.HBox([self.remove_button, self.confirm,
                                               self.cancel])])],
                   layout=W.Layout(flex_flow="row wrap", max_width="100%")),
            self.status,
        ]
        self.rename_button.on_click(lambda _: self.rename())
        self.remove_button.on_click(lambda _: self._ask())
        self.confirm.on_click(lambda _: self.remove())
        self.cancel.on_click(lambda _: self._ask(False))
        self._unsubscribe = session.directions.observe(lambda *_: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Show the registry's current directions (keeps the selection while it exists)."""
        current = self.list.value
        names = self.session.directions.names()
        labels = [(f"{n}  ({self.session.directions[n].where}, "
                   f"{self.session.directions[n].method})", n) for n in names]
        self.list.options = labels
        self.list.value = current if current in names else (names[-1] if names else None)

    def rename(self, old: str | None = None, new: str | None = None):
        """Rename ``old`` (default: the selected direction) to ``new`` (default: the box)."""
        old = old or self.list.value
        new = new if new is not None else self.new_name.value
        if not old:
            return self._say("Select a direction first.", error=True)
        try:
            new = as_name(new, "the renamed direction").strip()
            direction = self.session.directions.rename(old, new)
        except (KeyError, ValueError, TypeError) as err:
            return self._say(f"Not renamed: {err}", error=True)
        self.new_name.value = ""
        self.list.value = direction.name
        self._say(f"Renamed '{old}' to '{direction.name}'.")
        return direction

    def remove(self, name: str | None = None):
        """Remove ``name`` (default: the selected direction) from the registry."""
        self._ask(False)
        name = name or self.list.value
        if not name:
            return self._say("Select a direction first.", error=True)
        try:
            direction = self.session.directions.remove(name)
        except KeyError as err:
            return self._say(f"Not removed: {err}", error=True)
        self._say(f"Removed '{name}'. Views that showed it switched to another direction.")
        return direction

    def _ask(self, show: bool = True) -> None:
        if show and not self.list.value:
            self._say("Select a direction first.", error=True)
            return
        for button in (self.confirm, self.cancel):
            button.layout.display = "" if show else "none"
        if show:
            self._say(f"Remove '{self.list.value}' from the session? This cannot be undone.")

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#555"
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def close(self) -> None:
        self._unsubscribe()
        super().close()
