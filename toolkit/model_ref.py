"""Provenance as a value: which model a result, a direction or activations came from.

Results never hold a live session (an RLock, the model, the tokenizer): they hold a
:class:`ModelRef`, an immutable record of the model's name, weights fingerprint, width and
number of blocks. It pickles, never keeps a model alive, and one function,
:func:`check_same_model`, decides whether two things belong together.

Calls that need the model's geometry resolve a live session from the reference
(:func:`live_session`): any session in this process whose current weights have that
fingerprint.

>>> a = ModelRef("m", "abc", width=64, blocks=4)
>>> check_same_model(a, ModelRef("m", "abc", 64, 4))
>>> check_same_model(a, ModelRef("other", "def", 64, 4), what="direction 'x'")
Traceback (most recent call last):
...
ValueError: direction 'x' comes from another model (m, fingerprint abc) than this one ...
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ModelRef:
    """Name, weights fingerprint, residual width and block count of a model."""

    name: str
    fingerprint: str
    width: int
    blocks: int

    @classmethod
    def unknown(cls, width: int) -> ModelRef:
        """A reference that knows only the width (things built by hand): only width is checked."""
        return cls("", "", width, 0)

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"


class FromModel:
    """Mixin for values that name their model in a ``source`` field (a ModelRef or None)."""

    source: ModelRef | None

    @property
    def model(self) -> str:
        """Name of the model it came from ("" if unknown)."""
        return self.source.name if self.source is not None else ""

    @property
    def fingerprint(self) -> str:
        """Weights fingerprint of the model it came from ("" if unknown)."""
        return self.source.fingerprint if self.source is not None else ""


def ref_of(thing: Any) -> ModelRef | None:
    """The model reference of a ModelRef, a session (``.ref``) or a result (``.source``)."""
    if thing is None or isinstance(thing, ModelRef):
        return thing
    ref = getattr(thing, "source", None)
    if isinstance(ref, ModelRef) or ref is None and hasattr(thing, "source"):
        return ref
    ref = getattr(thing, "ref", None)
    return ref if isinstance(ref, ModelRef) else None


def check_same_model(a: Any, b: Any, *, what: str = "this") -> None:
    """Raise a clear error unless ``a`` and ``b`` (ModelRefs, sessions or results) come from
    the same model. Unknown provenance on either side is not checked; another width is
    always an error; another fingerprint is an error (adopt a direction on purpose with
    :meth:`Direction.adopted_by`)."""
    ra, rb = ref_of(a), ref_of(b)
    if ra is None or rb is None:
        return
    if ra.width != rb.width:
        raise ValueError(
            f"{what} has {ra.width} dims but the residual stream here has {rb.width}: it comes "
            f"from another model ({ra.name or 'unknown'}); rebuild it on this model")
    if ra.fingerprint and rb.fingerprint and ra.fingerprint != rb.fingerprint:
        raise ValueError(
            f"{what} comes from another model ({ra.name or 'unknown'}, fingerprint "
            f"{ra.fingerprint}) than this one ({rb.name or 'unknown'}, {rb.fingerprint}): "
            "rebuild it on this model, or adopt it on purpose (d.adopted_by(session))")


_LIVE: weakref.WeakSet = weakref.WeakSet()


def register_live(session: Any) -> None:
    """Make ``session`` findable by :func:`live_session` while it is alive."""
    _LIVE.add(session)


def live_session(ref: ModelRef | None, prefer: Any = None) -> Any:
    """A live session whose current weights match ``ref`` (``prefer`` first), or None."""
    if ref is None or not ref.fingerprint:
        return None
    candidates = ([prefer] if prefer is not None else []) + list(_LIVE)
    for session in candidates:
        if session.fingerprint == ref.fingerprint:
            return session
    return None


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def weights_fingerprint(model: torch.nn.Module, name: str) -> str:
    """Identity of the weights: name, config, and for every parameter tensor its name, shape,
    dtype and the exact integer sum of its bit patterns (any changed value changes it;
    order-independent, so the same on every machine and thread count). About 50 ms for
    135M parameters on this kind of CPU."""
    digest = hashlib.sha256(name.encode())
    digest.update(model.config.to_json_string().encode())
    for pname, p in model.named_parameters():
        t = p.detach()
        digest.update(f"{pname}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.device.type == "meta" or t.numel() == 0:
            continue
        bits = t.reshape(-1).view(_BITS[t.element_size()])
        total = sum(int(chunk.sum(dtype=torch.int64)) for chunk in bits.split(1 << 20))
        digest.update(str(total).encode())
    return digest.hexdigest()[:16]


def weights_version(model: torch.nn.Module) -> tuple[int, int]:
    """torch's in-place version counters and storage addresses of the parameters, summed:
    changes whenever a parameter is edited in place or replaced (cheap to read)."""
    params = list(model.parameters())
    return (sum(p._version for p in params),  # noqa: SLF001
            sum(p.data_ptr() for p in params))


__all__ = ["FromModel", "ModelRef", "check_same_model", "live_session", "ref_of", "register_live",
           "weights_fingerprint", "weights_version"]
