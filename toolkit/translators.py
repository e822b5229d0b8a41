"""Fitted lenses as values: one affine map per layer into the last block's output space.

A :class:`FittedLens` maps the stream at hidden state ``l`` (before the final norm) to a stream
in the space of the last block's output, ``W_l h + b_l``; the lens logits are then the final
norm and the head of that (``backend.logits_at(lens.apply(h, l), "blocks.{n-1}.resid_post")``).

- ``kind="tuned"`` (Belrose et al. 2023, arXiv 2303.08112): ``W_l = I + A_l`` trained to
  minimise KL(final || lens) over the vocabulary (:func:`reprlab.fit_tuned_lens`);
- ``kind="jacobian"`` (Gurnee et al. 2026): ``W_l = E[d h_final / d h_l]``, ``b_l = 0``
  (:func:`reprlab.fit_jacobian_lens`).

On disk: safetensors (``weight`` ``[layers, width, width]``, ``bias`` ``[layers, width]``,
float32) with JSON metadata ``"reprlab"`` (format, kind, model, layers, ``meta`` and a sha256 of
the tensors, so a tampered file is refused); nothing is pickled. The cache keeps one per model
and kind at ``cache_root()/lenses/<fingerprint>/<kind>.safetensors``.

>>> fitted = load_lens(session, "tuned")                         # doctest: +SKIP
>>> fitted.apply(h, 12).shape                                    # doctest: +SKIP
torch.Size([tokens, 576])
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .conversion import cache_root
from .direction_files import json_safe
from .model_ref import FromModel, ModelRef
from .version import __version__

if TYPE_CHECKING:
    from .session import Session

KINDS = ("tuned", "jacobian")
FORMAT = "reprlab.lens/1"
#: Rough fit time of each kind with its defaults on the embedded model on 2 CPU cores
#: (measured; said in the error a lens view shows before a fit exists).
FIT_MINUTES = {"tuned": 10, "jacobian": 10}
_FIT_CALL = {"tuned": "fit_tuned_lens", "jacobian": "fit_jacobian_lens"}


_LOADED: dict[str, tuple[tuple[int, int], FittedLens]] = {}  # path -> (mtime, size), lens


class LensNotFitted(FileNotFoundError):
    """No fitted lens of that kind is cached for this model yet."""


@dataclass(frozen=True, eq=False)
class FittedLens(FromModel):
    """Per-layer affine maps ``weight[i] @ h + bias[i]`` for hidden states ``layers[i]``.

    ``meta``: JSON-able facts of the fit (texts, tokens, seconds, held-out KL per layer of
    this lens and of the logit lens, seed, settings).
    """

    kind: str
    source: ModelRef
    layers: tuple[int, ...]
    weight: torch.Tensor
    bias: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"lens kind {self.kind!r}: one of {', '.join(KINDS)}")
        n, d = len(self.layers), self.source.width
        if tuple(self.weight.shape) != (n, d, d) or tuple(self.bias.shape) != (n, d):
            raise ValueError(
                f"a {self.kind} lens of {n} layers at width {d} needs weight [{n}, {d}, {d}] "
                f"and bias [{n}, {d}], got {list(self.weight.shape)} and "
                f"{list(self.bias.shape)}")
        if not (torch.isfinite(self.weight).all() and torch.isfinite(self.bias).all()):
            raise ValueError(f"the {self.kind} lens holds non-finite values (NaN or inf): "
                             "fit it again")

    def apply(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """The stream ``hidden`` ``[..., width]`` at hidden state ``layer`` translated into
        the last block's output space (float32, before the final norm)."""
        if layer not in self.layers:
            raise ValueError(f"this {self.kind} lens covers hidden states {self.layers[0]}.."
                             f"{self.layers[-1]}, not {layer}")
        i = self.layers.index(layer)
        h = hidden.to(self.weight.device, torch.float32)
        return h @ self.weight[i].T + self.bias[i]

    def heldout_kl(self) -> dict[str, list[float]]:
        """Mean held-out KL(final || lens) per layer, of this lens and of the logit lens."""
        return dict(self.meta.get("heldout_kl", {}))

    def save(self, path: str | Path | None = None) -> Path:
        """Write to ``path`` (default: this model's cache entry) via a temporary file renamed
        only once complete, so an interrupted save never leaves a file that loads."""
        path = Path(path) if path is not None else lens_path(self.source, self.kind)
        weight = self.weight.detach().cpu().float().contiguous()
        bias = self.bias.detach().cpu().float().contiguous()
        ref = self.source
        header = {"format": FORMAT, "reprlab_version": __version__, "kind": self.kind,
                  "model": ref.name, "fingerprint": ref.fingerprint, "width": ref.width,
                  "blocks": ref.blocks, "layers": list(self.layers),
                  "sha256": _digest(weight, bias), "meta": json_safe(self.meta)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file({"weight": weight, "bias": bias}, str(tmp),
                      metadata={"reprlab": json.dumps(header)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def __repr__(self) -> str:
        return (f"FittedLens({self.kind}, hidden states {self.layers[0]}..{self.layers[-1]}, "
                f"model={self.model!r})")


def lens_path(model: ModelRef | Session, kind: str) -> Path:
    """Cache file of the ``kind`` lens of a model (a ModelRef or a session)."""
    ref = model if isinstance(model, ModelRef) else model.ref
    return cache_root() / "lenses" / ref.fingerprint / f"{kind}.safetensors"


def load_lens(session: Session, kind_or_path: str | Path) -> FittedLens:
    """The cached ``"tuned"``/``"jacobian"`` lens of the session's model, or the lens file at
    a path; refused (ValueError) when it was fitted for another model, is damaged or holds
    non-finite values.

    >>> load_lens(s, "jacobian"); load_lens(s, "my_lens.safetensors")   # doctest: +SKIP
    """
    if isinstance(kind_or_path, str) and kind_or_path in KINDS:
        kind = kind_or_path
        path = lens_path(session, kind)
        if not path.is_file():
            raise LensNotFitted(
                f"no {kind} lens fitted for {session.name} yet: run "
                f"reprlab.{_FIT_CALL[kind]}(session) (about {FIT_MINUTES[kind]} min on 2 CPU "
                "cores) or press Fit in the Lens tab")
    else:
        path = Path(kind_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no lens file at {path}: fit one with "
                                    "reprlab.fit_tuned_lens(session) and save it there")
    stat = path.stat()
    key, seen = str(path.resolve()), (stat.st_mtime_ns, stat.st_size)
    hit = _LOADED.get(key)
    fitted = hit[1] if hit is not None and hit[0] == seen else read_lens(path)
    check_fits(fitted, session, path)
    _LOADED[key] = (seen, fitted)  # a lens view redraws without reading 40 MB again
    return fitted


def read_lens(path: str | Path) -> FittedLens:
    """The lens in ``path``, checked against its own header and checksum (no model check)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("reprlab", "null"))
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except Exception as err:  # safetensors raises its own error types on a damaged file
        raise ValueError(f"{path} is not a readable lens file ({err}): delete it and fit the "
                         "lens again") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a reprlab lens file (no "
                         f"{FORMAT!r} metadata)")
    if header.get("sha256") != _digest(weight.float(), bias.float()):
        raise ValueError(f"{path} was changed after it was written (its tensors do not match "
                         "its checksum): delete it and fit the lens again")
    try:
        ref = ModelRef(str(header["model"]), str(header["fingerprint"]), int(header["width"]),
                       int(header["blocks"]))
        return FittedLens(str(header["kind"]), ref, tuple(int(x) for x in header["layers"]),
                          weight.float(), bias.float(), dict(header.get("meta") or {}))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}; delete it and fit the lens again") from None


def check_fits(fitted: FittedLens, session: Session, where: object = "this lens") -> None:
    """Refuse a lens fitted for another model than the session's, saying what to do."""
    ref, here = fitted.source, session.ref
    fit = f"fit one for it with reprlab.{_FIT_CALL[fitted.kind]}(session)"
    if ref.width != here.width or ref.blocks != here.blocks:
        raise ValueError(
            f"{where} is a {fitted.kind} lens for {ref.name or 'another model'} (width "
            f"{ref.width}, {ref.blocks} blocks) but {here.name} has width {here.width} and "
            f"{here.blocks} blocks: {fit}")
    if ref.fingerprint != here.fingerprint:
        raise ValueError(
            f"{where} is a {fitted.kind} lens fitted for {ref.name or 'another model'} "
            f"(fingerprint {ref.fingerprint}), not for the weights of {here.name} "
            f"({here.fingerprint}): {fit}")
    expected = tuple(range(here.blocks))
    if fitted.layers != expected:
        raise ValueError(f"{where} covers hidden states {fitted.layers}, not 0..{here.blocks - 1}"
                         f": {fit}")


def _digest(weight: torch.Tensor, bias: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in (weight, bias):
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["FIT_MINUTES", "KINDS", "FittedLens", "LensNotFitted", "check_fits", "lens_path",
           "load_lens", "read_lens"]
