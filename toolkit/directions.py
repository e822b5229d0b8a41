"""Direction: a named unit vector at a layer (or site), or in unembedding space.

A Direction is a value: its vector, where it lives, how it was made (``method``, ``info``) and
which model it came from (``source``, a :class:`~reprlab.model_ref.ModelRef`). The work
happens above it: builders in :mod:`reprlab.direction_sources`, files in
:mod:`reprlab.direction_files`, projections in :mod:`reprlab.geometry`; the class methods
here are thin sugar over them, and the session's registry lives in :mod:`reprlab.registry`.

>>> d = Direction.from_probe(curve, layer=14, name="sentiment")     # doctest: +SKIP
>>> (d + other).renamed("both"), -d                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import direction_files, direction_sources, geometry, lens_readout
from .checks import as_name
from .model_ref import FromModel, ModelRef, check_same_model, ref_of
from .types import Inner, Method

if TYPE_CHECKING:
    from .activations import Activations
    from .probes import ProbeCurve
    from .session import Session


@dataclass(frozen=True, eq=False)
class Direction(FromModel):
    """A unit vector in a model's residual stream at ``layer`` (or in unembedding space).

    ``layer`` is a hidden-state index; ``site`` names a place that has none (the last block's
    output before the final norm, ``"blocks.29.resid_post"``), for steering and export.
    ``method`` says how it was made and ``info`` what it came from (data set, classes, score);
    ``source`` names the model it was built on (a direction is refused by another model's
    activations, session and registry). Directions at the same place combine with ``+`` and
    ``-`` (the result is renormalized); ``-d`` flips one.
    """

    name: str
    vector: torch.Tensor
    layer: int | None
    method: str
    space: str = "residual"
    info: dict = field(default_factory=dict)
    source: ModelRef | None = None
    site: str | None = None

    def __post_init__(self):
        as_name(self.name, "a direction")
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
        if self.source is not None and not isinstance(self.source, ModelRef):
            raise TypeError(f"source must be a ModelRef (session.ref), got "
                            f"{type(self.source).__name__}")

    # -- what it is -------------------------------------------------------------------------

    @property
    def where(self) -> str:
        if self.space == "unembedding":
            return "unembedding"
        return f"site {self.site}" if self.layer is None and self.site else f"layer {self.layer}"

    @property
    def width(self) -> int:
        return self.vector.numel()

    def reading_layer(self, layer: int | None = None) -> int:
        """Where this direction is read: ``layer`` if given, else its own layer.

        An unembedding-space direction has no layer of its own, so it needs ``layer=``
        (projections, token projections and steering all follow this one rule).
        """
        if layer is not None:
            return layer
        if self.layer is None:
            if self.site is not None:
                raise ValueError(
                    f"direction {self.name!r} lives at site {self.site!r}, which has no "
                    "hidden-state index: pass layer= to read it at one")
            raise ValueError(
                f"direction {self.name!r} lives in unembedding space: pass layer= to say which "
                "hidden state to use (the last one, after the final norm, pairs exactly with "
                "the unembedding)")
        return self.layer

    def reading_site(self, layer: int | None = None, site: str | None = None) -> int | str:
        """Where this direction is applied (steering, export): ``site`` or ``layer`` if given,
        else its own site or layer (a spec for :meth:`Session.site`)."""
        if site is not None:
            return site
        if layer is None and self.layer is None and self.site is not None:
            return self.site
        return self.reading_layer(layer)

    def check_fits(self, session_or_ref) -> None:
        """Raise a clear error unless this direction belongs to that model (width, and
        fingerprint where both are known)."""
        check_same_model(self._ref(), session_or_ref, what=f"direction {self.name!r}")

    def _ref(self) -> ModelRef:
        ref = self.source
        return ref if ref is not None else ModelRef.unknown(self.width)

    def adopted_by(self, session: Session) -> Direction:
        """This direction, marked as belonging to ``session``'s model (widths must match):
        for transferring a direction between models of the same width on purpose."""
        ref = ref_of(session)
        check_same_model(ModelRef.unknown(self.width), ref, what=f"direction {self.name!r}")
        return replace(self, source=ref)

    def renamed(self, name: str) -> Direction:
        return replace(self, name=name)

    # -- builders (sugar over direction_sources) ----------------------------------------------

    @classmethod
    def from_probe(cls, curve: ProbeCurve, layer: int, name: str | None = None,
                   cls_label=None) -> Direction:
        """The read-out direction of ``curve``'s probe at ``layer`` (fitted on all examples).

        Two classes: points towards the second class (``curve.classes[1]``). More classes: pass
        ``cls_label`` to get that class's weight vector. A probe direction is a read-out
        (covector); for steering, a mean-difference direction is often the better choice.
        """
        return direction_sources.from_probe(cls, curve, layer, name, cls_label)

    @classmethod
    def mean_difference(cls, pos_acts: Activations, neg_acts: Activations, layer: int,
                        name: str | None = None) -> Direction:
        """Mean of ``pos_acts`` minus mean of ``neg_acts`` at ``layer`` (both from one model).

        >>> Direction.mean_difference(s.activations(pos), s.activations(neg), layer=12)
        ... # doctest: +SKIP
        """
        return direction_sources.mean_difference(cls, pos_acts, neg_acts, layer, name)

    @classmethod
    def pca_of_differences(cls, pairs_acts, layer: int, name: str | None = None) -> Direction:
        """First principal axis of paired differences (as in control-vector work).

        ``pairs_acts``: ``(pos_acts, neg_acts)`` with aligned rows, or one Activations whose
        rows alternate positive, negative. The axis is uncentered (it keeps the shared shift
        of the pairs, which centering would remove) and signed to agree with the mean
        difference.
        """
        return direction_sources.pca_of_differences(cls, pairs_acts, layer, name)

    @classmethod
    def counterfactual(cls, session: Session, word_pairs, name: str | None = None) -> Direction:
        """Park et al.'s unembedding-space direction from counterfactual word pairs: the mean
        of ``gamma(y1) - gamma(y0)`` over pairs ``(y0, y1)`` that differ in one concept."""
        return direction_sources.counterfactual(cls, session, word_pairs, name)

    @classmethod
    def from_dataset(cls, session: Session, dataset: str, layer: int,
                     method: Method = "mean_difference", name: str | None = None) -> Direction:
        """A direction from a built-in two-class data set (first class minus second).

        ``method``: "mean_difference", "probe" or "pca_of_differences" (pairs texts of the two
        classes in order). The data set's activations are cached after the first call.
        """
        return direction_sources.from_dataset(cls, session, dataset, layer, method, name)

    # -- projection and files (sugar over geometry and direction_files) -----------------------

    def project(self, acts: Activations, inner: Inner = "euclidean", *,
                layer: int | None = None) -> torch.Tensor:
        """Scalar projection of each row of ``acts`` on this direction under ``inner``.

        The geometry for "standardized", "whitened" and "causal" comes from a live session of
        the model that made ``acts``. ``layer`` defaults to this direction's layer (see
        :meth:`reading_layer`).

        >>> d.project(s.activations(texts), inner="causal")     # doctest: +SKIP
        """
        return geometry.project_activations(self, acts, inner, layer)

    def read_out(self, session: Session, *, lens: str = "logit", k: int = 10,
                 **options) -> lens_readout.LensReadOut:
        """The ``k`` tokens this direction promotes and suppresses through ``lens`` at its
        layer, beside random directions (see :func:`reprlab.lens_readout.read_out`).

        >>> d.read_out(s, k=5).summary()                                # doctest: +SKIP
        """
        return lens_readout.read_out(session, self, lens=lens, k=k, **options)

    def save(self, path: str | Path) -> Path:
        """Write this direction to a safetensors file with JSON metadata (no pickle).

        >>> d.save("sentiment.safetensors")                   # doctest: +SKIP
        """
        return direction_files.save_directions(path, [self])

    @classmethod
    def load(cls, path: str | Path, session: Session | None = None, *,
             adopt: bool = False) -> Direction:
        """Read a direction written by :meth:`save`. With ``session``, one from another model
        is refused (another width always; other weights of the same width unless
        ``adopt=True``, which marks it as this session's on purpose)."""
        directions = direction_files.load_directions(cls, path, session, adopt=adopt)
        if len(directions) != 1:
            raise ValueError(f"{path} holds {len(directions)} directions: load it with "
                             "session.directions.load(path)")
        return directions[0]

    def export_gguf(self, path: str | Path, session: Session,
                    layers: int | Sequence[int] | None = None, *,
                    sites: Sequence[str] | None = None) -> Path:
        """Write a llama.cpp control-vector file (as repeng does) steering at ``layers`` or
        ``sites`` (default: this direction's own); strength 1 there equals
        ``Steer(d, alpha=1)`` at the same site.

        >>> d.export_gguf("mood.gguf", s, layers=range(8, 13))  # doctest: +SKIP
        """
        return direction_files.export_gguf(path, self, session, layers, sites)

    @classmethod
    def import_gguf(cls, path: str | Path, session: Session) -> list[Direction]:
        """Read a llama.cpp control vector: one direction per ``direction.k`` tensor, at the
        site it edits, with ``info["scale"]`` its length in typical norms there."""
        return direction_files.import_gguf(cls, path, session)

    # -- arithmetic -------------------------------------------------------------------------

    def _combine(self, other: Direction, sign: float) -> Direction:
        if not isinstance(other, Direction):
            return NotImplemented
        if (self.layer, self.site, self.space) != (other.layer, other.site, other.space):
            raise ValueError(
                f"cannot combine {self.name!r} ({self.where}) with {other.name!r} "
                f"({other.where}): directions must share layer and space"
            )
        check_same_model(other._ref(), self._ref(),
                         what=f"cannot combine {self.name!r} and {other.name!r}: direction "
                              f"{other.name!r}")
        op = "+" if sign > 0 else "-"
        return Direction(f"{self.name} {op} {other.name}", self.vector + sign * other.vector,
                         self.layer, "combination", self.space,
                         source=self.source or other.source, site=self.site)

    def __add__(self, other):
        return self._combine(other, 1.0)

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __neg__(self):
        return replace(self, name=f"-{self.name}", vector=-self.vector)

    def __mul__(self, k):
        """``k * d``: the same direction, flipped when ``k < 0`` (a direction has unit
        length; weight a combination with ``Direction(name, a*d1.vector + b*d2.vector, ...)``)."""
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k == 0:
            return NotImplemented
        return self if k > 0 else -self

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return (f"Direction({self.name!r}, {self.where}, method={self.method}, "
                f"width={self.vector.numel()})")


__all__ = ["Direction"]
