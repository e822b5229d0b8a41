"""The session's registry of named directions, shared by every view on a session.

>>> session.directions.add(d)                                        # doctest: +SKIP
>>> session.directions.names()                                       # doctest: +SKIP
['sentiment']
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import direction_files
from .directions import Direction

if TYPE_CHECKING:
    from .session import Session


Listener = Callable[[str, Direction], None]


def _require_direction(direction) -> None:
    if not isinstance(direction, Direction):
        raise TypeError(f"expected a Direction, got {type(direction).__name__}")


def _same_direction(a: Direction, b: Direction) -> bool:
    """Whether ``b`` is a rebuild of ``a``: same method and place, and the same vector."""
    return (a.method, a.layer, a.site, a.space) == (b.method, b.layer, b.site, b.space) and (
        a.vector.shape == b.vector.shape and torch.allclose(a.vector, b.vector, atol=1e-5))


def _weak(listener: Listener) -> Callable[[], Listener | None]:
    """A weak handle on a bound method (its object may be collected), else a strong one."""
    if inspect.ismethod(listener):
        return weakref.WeakMethod(listener)
    return lambda: listener


class DirectionRegistry:
    """Named directions shared by every widget on a session; listeners hear adds and removals.

    Nothing registered is ever silently replaced: :meth:`add` refuses a taken name unless
    ``overwrite=True``, :meth:`add_new` picks a free one. Directions must come from the
    session's model (:func:`~reprlab.model_ref.check_same_model`: another width or another
    fingerprint is refused; adopt one on purpose with :meth:`Direction.adopted_by`).

    >>> unsubscribe = session.directions.observe(lambda event, d: print(event, d.name))
    ... # doctest: +SKIP
    """

    def __init__(self, session: Session | None = None):
        self.session = session
        self._items: dict[str, Direction] = {}
        self._listeners: list[Callable[[], Listener | None]] = []
        self._lock = threading.Lock()

    def add(self, direction: Direction, *, overwrite: bool = False) -> Direction:
        """Register ``direction`` under its name; a taken name is an error unless
        ``overwrite=True`` (:meth:`add_new` picks a free name instead)."""
        self._check(direction)
        with self._lock:
            if direction.name in self._items and not overwrite:
                raise ValueError(
                    f"a direction named {direction.name!r} exists: pick another name "
                    "(d.renamed(...)), pass overwrite=True, or remove it first with "
                    f"session.directions.remove({direction.name!r})")
            self._items[direction.name] = direction
        self._notify("added", direction)
        return direction

    def add_new(self, direction: Direction) -> Direction:
        """Register ``direction`` without overwriting a different one: if its name is taken by
        another vector it becomes ``name-2`` (``-3``, ...). Rebuilding the same direction just
        replaces it. Widgets use this for names they make up; returns what was registered."""
        self._check(direction)
        with self._lock:
            name, k = direction.name, 2
            while name in self._items and not _same_direction(self._items[name], direction):
                name, k = f"{direction.name}-{k}", k + 1
            if name != direction.name:
                direction = direction.renamed(name)
            self._items[name] = direction
        self._notify("added", direction)
        return direction

    def save(self, path: str | Path) -> Path:
        """Write every registered direction to one safetensors file (JSON metadata)."""
        if not self._items:
            raise ValueError("the registry is empty: build or add a direction before saving")
        return direction_files.save_directions(path, list(self))

    def load(self, path: str | Path, *, adopt: bool = False) -> list[Direction]:
        """Add the directions saved in ``path``. A taken name gets a suffix (``-2``) unless
        it holds the same vector; returns what was registered. Directions from another model
        are refused and nothing is added (another width always; other weights of the same
        width unless ``adopt=True``)."""
        directions = direction_files.load_directions(Direction, path, self.session,
                                                     adopt=adopt)
        for d in directions:
            self._check(d)
        return [self.add_new(d) for d in directions]

    def remove(self, name: str) -> Direction:
        with self._lock:
            if name not in self._items:
                raise KeyError(f"no direction named {name!r}; registered: {self.names()}")
            direction = self._items.pop(name)
        self._notify("removed", direction)
        return direction

    def rename(self, old: str, new: str) -> Direction:
        """Give the direction ``old`` the name ``new`` (same place in the list); listeners hear
        "renamed" with the renamed direction. A taken or empty name is refused.

        >>> session.directions.rename("sentiment@10", "mood")   # doctest: +SKIP
        """
        new = new.strip() if isinstance(new, str) else new
        if not isinstance(new, str) or not new:
            raise ValueError(f"a direction name must be a non-empty string, got {new!r}")
        with self._lock:
            if old not in self._items:
                raise KeyError(f"no direction named {old!r}; registered: {self.names()}")
            if new != old and new in self._items:
                raise ValueError(f"a direction named {new!r} exists: pick another name")
            direction = self._items[old].renamed(new)
            self._items = {(new if k == old else k): (direction if k == old else v)
                           for k, v in self._items.items()}
        self._notify("renamed", direction)
        return direction

    def names(self) -> list[str]:
        return list(self._items)

    def observe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, direction)`` on "added", "removed" or "renamed" (with the
        direction under its new name); returns an unsubscribe.

        A bound method is held weakly: a view that is garbage-collected stops listening.
        """
        handle = _weak(listener)
        self._listeners.append(handle)
        return lambda: self._listeners.remove(handle) if handle in self._listeners else None

    @property
    def listeners(self) -> int:
        """Number of live listeners."""
        return sum(h() is not None for h in self._listeners)

    def _check(self, direction) -> None:
        _require_direction(direction)
        if not isinstance(direction.name, str) or not direction.name.strip():
            raise ValueError(f"a direction name must be a non-empty string, got "
                             f"{direction.name!r}: d.renamed('my-name')")
        if self.session is not None:
            direction.check_fits(self.session)

    def _notify(self, event: str, direction: Direction) -> None:
        for handle in list(self._listeners):
            listener = handle()
            if listener is None:
                with contextlib.suppress(ValueError):  # another thread removed it first
                    self._listeners.remove(handle)
            else:
                listener(event, direction)

    def __getitem__(self, name: str) -> Direction:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"no direction named {name!r}; registered: {self.names()}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Direction]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"DirectionRegistry({self.names()})"


__all__ = ["DirectionRegistry"]
