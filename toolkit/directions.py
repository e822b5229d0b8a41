"""Direction: a named unit vector at a layer, and the session's registry of directions.

>>> d = Direction.from_probe(curve, layer=14, name="sentiment")     # doctest: +SKIP
>>> session.directions.add(d)                                        # doctest: +SKIP
>>> session.directions.names()                                       # doctest: +SKIP
['sentiment']
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .activations import Activations
from .probes import ProbeCurve
from .types import Inner, Method

if TYPE_CHECKING:
    from .session import Session


@dataclass(frozen=True, eq=False)
class Direction:
    """A unit vector in a model's residual stream at ``layer`` (or in unembedding space).

    ``method`` says how it was made and ``info`` what it came from (data set, classes, score);
    ``model`` and ``fingerprint`` name the model it was built on (a direction is refused by
    another model's activations, session and registry).
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
    fingerprint: str = ""

    def __post_init__(self):
        vector = self.vector
        if not isinstance(vector, torch.Tensor):  # numpy arrays and lists of numbers
            try:
                vector = torch.as_tensor(np.asarray(vector, dtype=np.float64))
            except (TypeError, ValueError) as err:
                raise TypeError(f"a direction's vector must be a tensor or an array of numbers, "
                                f"got {type(self.vector).__name__} ({err})") from None
        if vector.ndim != 1:
            raise ValueError(f"a direction is one vector, got shape {tuple(vector.shape)}")
        if vector.is_complex():
            raise TypeError("a direction's vector must be real, got a complex tensor")
        vector = vector.detach().double()  # ints become floats; float64 avoids norm overflow
        if not torch.isfinite(vector).all():
            raise ValueError(f"direction {self.name!r} has NaN or infinite entries: pass a "
                             "finite vector")
        peak = vector.abs().max()
        norm = (vector / peak).norm() if peak > 0 else peak
        if norm == 0:
            raise ValueError(f"direction {self.name!r} has zero length: pass a non-zero vector")
        unit = (vector / peak / norm).float()
        given = self.vector
        if (isinstance(given, torch.Tensor) and given.dtype == torch.float32
                and abs(float(norm * peak) - 1.0) <= 1e-6):
            unit = given.detach()  # already a unit vector (e.g. loaded from disk): bit for bit
        object.__setattr__(self, "vector", unit)

    @property
    def where(self) -> str:
        return "unembedding" if self.space == "unembedding" else f"layer {self.layer}"

    @property
    def width(self) -> int:
        return self.vector.numel()

    def reading_layer(self, layer: int | None = None) -> int:
        """Where this direction is read or applied: ``layer`` if given, else its own layer.

        An unembedding-space direction has no layer of its own, so it needs ``layer=``
        (projections, token projections and steering all follow this one rule).
        """
        if layer is not None:
            return layer
        if self.layer is None:
            raise ValueError(
                f"direction {self.name!r} lives in unembedding space: pass layer= to say which "
                "hidden state to use (the last one pairs exactly with the unembedding)")
        return self.layer

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
            fingerprint=curve.fingerprint,
        )

    @classmethod
    def mean_difference(
        cls, pos_acts: Activations, neg_acts: Activations, layer: int, name: str | None = None
    ) -> Direction:
        """Mean of ``pos_acts`` minus mean of ``neg_acts`` at ``layer`` (difference of means).

        >>> Direction.mean_difference(s.activations(pos), s.activations(neg), layer=12)
        ... # doctest: +SKIP
        """
        pos, neg = pos_acts.layer(layer).float(), neg_acts.layer(layer).float()
        for kind, rows in (("positive", pos), ("negative", neg)):
            if len(rows) == 0:
                raise ValueError(f"the {kind} set is empty: a mean difference needs texts on "
                                 "both sides")
        return cls(
            name=name or f"mean-diff@{layer}",
            vector=pos.mean(0) - neg.mean(0),
            layer=layer,
            method="mean_difference",
            info={"positive": len(pos), "negative": len(neg)},
            model=pos_acts.model,
            fingerprint=pos_acts.fingerprint,
        )

    @classmethod
    def pca_of_differences(
        cls, pairs_acts, layer: int, name: str | None = None
    ) -> Direction:
        """First principal axis of paired differences (as in control-vector work).

        ``pairs_acts``: ``(pos_acts, neg_acts)`` with aligned rows, or one Activations whose
        rows alternate positive, negative. The axis is uncentered (it keeps the shared shift
        of the pairs, which centering would remove) and signed to agree with the mean
        difference.
        """
        if isinstance(pairs_acts, tuple):
            pos, neg = (a.layer(layer).float() for a in pairs_acts)
        else:
            rows = pairs_acts.layer(layer).float()
            if len(rows) % 2:
                raise ValueError("alternating pairs need an even number of rows")
            pos, neg = rows[0::2], rows[1::2]
        if pos.shape != neg.shape:
            raise ValueError(f"{len(pos)} positive rows but {len(neg)} negative: pairs must align")
        diffs = (pos - neg).double()
        axis = torch.linalg.svd(diffs, full_matrices=False).Vh[0]
        if axis @ diffs.mean(0) < 0:
            axis = -axis
        source = pairs_acts[0] if isinstance(pairs_acts, tuple) else pairs_acts
        return cls(name or f"pca-diff@{layer}", axis.float(), layer, "pca_of_differences",
                   info={"pairs": len(diffs)}, model=source.model,
                   fingerprint=source.fingerprint)

    @classmethod
    def counterfactual(cls, session: Session, word_pairs, name: str | None = None) -> Direction:
        """Park et al.'s unembedding-space direction from counterfactual word pairs.

        For pairs ``(y0, y1)`` differing in one concept (``("king", "queen")``), the direction
        is the mean of ``gamma(y1) - gamma(y0)`` over the unembedding vectors of the words'
        in-sentence tokens (" king", else "king"), taken in the causal (whitened) space and
        mapped back. Pairs where either word is not a single token are skipped, listed in
        ``info``.
        """
        from .direction_sources import counterfactual

        return counterfactual(cls, session, word_pairs, name)

    @classmethod
    def from_dataset(cls, session: Session, dataset: str, layer: int,
                     method: Method = "mean_difference",
                     name: str | None = None) -> Direction:
        """A direction from a built-in two-class data set (first class minus second).

        ``method``: "mean_difference", "probe" or "pca_of_differences" (pairs texts of the two
        classes in order). The data set's activations are cached after the first call.
        """
        from .direction_sources import from_dataset

        return from_dataset(cls, session, dataset, layer, method, name)

    def project(self, acts: Activations, inner: Inner = "euclidean", *,
                layer: int | None = None) -> torch.Tensor:
        """Scalar projection of each row of ``acts`` on this direction under ``inner``.

        The geometry for "standardized" and "causal" comes from the session that made
        ``acts``. ``layer`` defaults to this direction's layer (see :meth:`reading_layer`).

        >>> d.project(s.activations(texts), inner="causal")     # doctest: +SKIP
        """
        if acts.session is not None:
            from .geometry import project

            return project(acts.session, self, acts, inner, layer)
        if inner != "euclidean":
            raise ValueError(
                f"inner={inner!r} needs the geometry of the session that made the activations, "
                "and these were built by hand: make them with session.activations(...)")
        at = self.reading_layer(layer)
        self.check_fits(acts.width)
        return acts.layer(at).float() @ self.vector.to(acts.values.device)

    def check_fits(self, width: int, fingerprint: str = "", model: str = "") -> None:
        """Raise a clear error unless this direction fits a model of ``width`` and
        ``fingerprint`` (an empty fingerprint on either side is not checked)."""
        if self.width != width:
            raise ValueError(
                f"direction {self.name!r} has {self.width} dims but the residual stream "
                f"here has {width}: it was built on another model ({self.model or 'unknown'}); "
                "rebuild it on this session")
        if self.fingerprint and fingerprint and self.fingerprint != fingerprint:
            raise ValueError(
                f"direction {self.name!r} was built on another model ({self.model or 'unknown'}, "
                f"fingerprint {self.fingerprint}) than this one ({model or 'unknown'}, "
                f"{fingerprint}): rebuild it on this session, or adopt it on purpose with "
                "d.adopted_by(session)")

    def adopted_by(self, session: Session) -> Direction:
        """This direction, marked as belonging to ``session``'s model (widths must match):
        for transferring a direction between models of the same width on purpose."""
        self.check_fits(session.width)
        return replace(self, model=session.name, fingerprint=session.fingerprint)

    def save(self, path: str | Path) -> Path:
        """Write this direction to a safetensors file with JSON metadata (no pickle).

        >>> d.save("sentiment.safetensors")                   # doctest: +SKIP
        """
        from .direction_files import save_directions

        return save_directions(path, [self])

    @classmethod
    def load(cls, path: str | Path, session: Session | None = None) -> Direction:
        """Read a direction written by :meth:`save`; with ``session``, a direction of another
        width is an error and one from other weights of the same width a warning."""
        from .direction_files import load_directions

        directions = load_directions(path, session)
        if len(directions) != 1:
            raise ValueError(f"{path} holds {len(directions)} directions: load it with "
                             "session.directions.load(path)")
        return directions[0]

    def export_gguf(self, path: str | Path, session: Session,
                    layers: int | Sequence[int] | None = None) -> Path:
        """Write a llama.cpp control-vector file (as repeng does) steering at ``layers``
        (default: this direction's layer); strength 1 there equals ``Steer(d, alpha=1)``.

        >>> d.export_gguf("mood.gguf", s, layers=range(8, 13))  # doctest: +SKIP
        """
        from .direction_files import export_gguf

        return export_gguf(path, self, session, layers)

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
        if self.fingerprint and other.fingerprint and self.fingerprint != other.fingerprint:
            raise ValueError(f"cannot combine {self.name!r} and {other.name!r}: they were built "
                             "on different models")
        return Direction(f"{self.name} {op} {other.name}", self.vector + sign * other.vector,
                         self.layer, "combination", self.space, model=self.model,
                         fingerprint=self.fingerprint or other.fingerprint)

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


def _require_direction(direction) -> None:
    if not isinstance(direction, Direction):
        raise TypeError(f"expected a Direction, got {type(direction).__name__}")


def _same_direction(a: Direction, b: Direction) -> bool:
    return (a.method, a.layer, a.space) == (b.method, b.layer, b.space) and (
        a.vector.shape == b.vector.shape and torch.allclose(a.vector, b.vector, atol=1e-5))


def _weak(listener: Listener) -> Callable[[], Listener | None]:
    """A weak handle on a bound method (its object may be collected), else a strong one."""
    if inspect.ismethod(listener):
        return weakref.WeakMethod(listener)
    return lambda: listener


class DirectionRegistry:
    """Named directions shared by every widget on a session; listeners hear adds and removals.

    Nothing registered is ever silently replaced: :meth:`add` refuses a taken name unless
    ``overwrite=True``, :meth:`add_new` picks a free one. Directions must fit the session's
    model (width; another model's fingerprint is refused too).

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
        from .direction_files import save_directions

        if not self._items:
            raise ValueError("the registry is empty: build or add a direction before saving")
        return save_directions(path, list(self))

    def load(self, path: str | Path) -> list[Direction]:
        """Add the directions saved in ``path``. A taken name gets a suffix (``-2``) unless
        it holds the same vector; returns what was registered. Another width is an error
        (nothing is added); another fingerprint of the same width, a warning."""
        from .direction_files import load_directions

        directions = load_directions(path, self.session)
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
        if self.session is not None:
            s = self.session
            direction.check_fits(s.width, s.fingerprint, s.name)

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
