"""Direction: a named unit vector at a layer, and the session's registry of directions.

>>> d = Direction.from_probe(curve, layer=14, name="sentiment")     # doctest: +SKIP
>>> session.directions.add(d)                                        # doctest: +SKIP
>>> session.directions.names()                                       # doctest: +SKIP
['sentiment']
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch

from .probes import ProbeCurve


@dataclass(frozen=True, eq=False)
class Direction:
    """A unit vector in a model's residual stream at ``layer`` (or in unembedding space).

    ``method`` says how it was made and ``info`` what it came from (data set, classes, score).
    Directions at the same layer and space combine with ``+`` and ``-`` (the result is
    renormalized); ``-d`` flips one.
    """

    name: str
    vector: torch.Tensor
    layer: int | None
    method: str
    space: str = "residual"
    info: dict = field(default_factory=dict)
    model: str = ""

    def __post_init__(self):
        if self.vector.ndim != 1:
            raise ValueError(f"a direction is one vector, got shape {tuple(self.vector.shape)}")
        norm = self.vector.norm()
        if not torch.isfinite(norm) or norm == 0:
            raise ValueError(f"direction {self.name!r} has zero or non-finite length")
        object.__setattr__(self, "vector", (self.vector / norm).detach().float())

    @property
    def where(self) -> str:
        return "unembedding" if self.space == "unembedding" else f"layer {self.layer}"

    @classmethod
    def from_probe(
        cls, curve: ProbeCurve, layer: int, name: str | None = None, cls_label=None
    ) -> Direction:
        """The read-out direction of ``curve``'s probe at ``layer`` (fitted on all examples).

        Two classes: points towards the second class (``curve.classes[1]``). More classes: pass
        ``cls_label`` to get that class's weight vector. A probe direction is a read-out
        (covector); for steering, a mean-difference direction is often the better choice.
        """
        if curve.task != "classification":
            raise ValueError("from_probe needs a classification curve; use a regression's "
                             "weights directly via curve.weights")
        i = curve.index(layer)
        if len(curve.classes) == 2:
            vector, towards = curve.weights[i][0], curve.classes[1]
            away = curve.classes[0]
        else:
            if cls_label not in curve.classes:
                raise ValueError(f"pick one of the classes {list(curve.classes)} with cls_label=")
            vector, towards = curve.weights[i][curve.classes.index(cls_label)], cls_label
            away = "other classes"
        return cls(
            name=name or f"probe:{towards}@{layer}",
            vector=vector,
            layer=layer,
            method="probe",
            info={"positive": towards, "negative": away, "score": float(curve.scores[i]),
                  "metric": curve.metric, "examples": len(curve.labels)},
            model=curve.model,
        )

    def renamed(self, name: str) -> Direction:
        return replace(self, name=name)

    def _combine(self, other: Direction, sign: float) -> Direction:
        if not isinstance(other, Direction):
            return NotImplemented
        if (self.layer, self.space) != (other.layer, other.space):
            raise ValueError(
                f"cannot combine {self.name!r} ({self.where}) with {other.name!r} "
                f"({other.where}): directions must share layer and space"
            )
        op = "+" if sign > 0 else "-"
        return Direction(f"{self.name} {op} {other.name}", self.vector + sign * other.vector,
                         self.layer, "combination", self.space, model=self.model)

    def __add__(self, other):
        return self._combine(other, 1.0)

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __neg__(self):
        return replace(self, name=f"-{self.name}", vector=-self.vector)

    def __repr__(self) -> str:
        return (f"Direction({self.name!r}, {self.where}, method={self.method}, "
                f"width={self.vector.numel()})")


Listener = Callable[[str, Direction], None]


class DirectionRegistry:
    """Named directions shared by every widget on a session; listeners hear adds and removals.

    >>> unsubscribe = session.directions.observe(lambda event, d: print(event, d.name))
    ... # doctest: +SKIP
    """

    def __init__(self):
        self._items: dict[str, Direction] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def add(self, direction: Direction, *, replace: bool = True) -> Direction:
        """Register ``direction`` under its name (replacing one of the same name by default)."""
        if not isinstance(direction, Direction):
            raise TypeError(f"expected a Direction, got {type(direction).__name__}")
        with self._lock:
            if not replace and direction.name in self._items:
                raise KeyError(f"a direction named {direction.name!r} exists; pick another name")
            self._items[direction.name] = direction
        self._notify("added", direction)
        return direction

    def remove(self, name: str) -> Direction:
        with self._lock:
            if name not in self._items:
                raise KeyError(f"no direction named {name!r}; registered: {self.names()}")
            direction = self._items.pop(name)
        self._notify("removed", direction)
        return direction

    def names(self) -> list[str]:
        return list(self._items)

    def observe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, direction)`` on "added"/"removed"; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, event: str, direction: Direction) -> None:
        for listener in list(self._listeners):
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
