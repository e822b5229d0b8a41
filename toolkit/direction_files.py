"""Directions on disk: a safetensors file of vectors with JSON metadata, and llama.cpp export.

One format for one direction or a whole registry: tensor ``"0"``, ``"1"``, ... holds each unit
vector (float32), and the safetensors header's metadata ``"reprlab"`` holds a JSON object with
the file's reprlab version and, per direction, its name, layer, method, space, model name,
fingerprint, width and ``info``. Nothing is pickled.

>>> d.save("sentiment.safetensors"); Direction.load("sentiment.safetensors", session=s)
... # doctest: +SKIP
>>> d.export_gguf("sentiment.gguf", s, layers=[10, 11, 12])    # llama.cpp --control-vector
... # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

if TYPE_CHECKING:
    from .directions import Direction
    from .session import Session

FORMAT = "reprlab.directions/1"


def json_safe(value):
    """``value`` as plain JSON types: tuples become lists, numpy scalars numbers, the rest text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)) and np.size(value) == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_directions(path: str | Path, directions: Sequence[Direction]) -> Path:
    """Write ``directions`` to one safetensors file (see the module docstring)."""
    from . import __version__

    path = Path(path)
    entries = [{"name": d.name, "layer": d.layer, "method": d.method, "space": d.space,
                "model": d.model, "fingerprint": d.fingerprint, "width": d.width,
                "info": json_safe(d.info)} for d in directions]
    meta = {"format": FORMAT, "reprlab_version": __version__, "directions": entries}
    tensors = {str(i): d.vector.detach().cpu().float().contiguous().clone()
               for i, d in enumerate(directions)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"reprlab": json.dumps(meta)})
    return path


def load_directions(path: str | Path, session: Session | None = None) -> list[Direction]:
    """Read the directions in ``path``; with ``session``, check they fit its model.

    Another width is an error. Another fingerprint (same width, other weights) is a warning,
    and the directions are adopted by ``session`` (see :meth:`Direction.adopted_by`).
    """
    from .directions import Direction

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no directions file at {path}: save one with "
                                "d.save(path) or session.directions.save(path)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("reprlab", "null"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError(f"{path} is a safetensors file but not a reprlab directions "
                                 "file (no 'reprlab' metadata)")
            vectors = [f.get_tensor(str(i)) for i in range(len(meta["directions"]))]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"cannot read directions from {path}: {err}") from None
    except Exception as err:  # safetensors raises its own error types on a damaged file
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    out = []
    for entry, vector in zip(meta["directions"], vectors):
        d = Direction(entry["name"], vector, entry["layer"], entry["method"], entry["space"],
                      info=entry.get("info") or {}, model=entry.get("model", ""),
                      fingerprint=entry.get("fingerprint", ""))
        out.append(d if session is None else _fit(d, session, path))
    return out


def _fit(d: Direction, session: Session, path: Path) -> Direction:
    if d.width != session.width:
        raise ValueError(
            f"direction {d.name!r} in {path} has {d.width} dims but {session.name} has width "
            f"{session.width}: it was saved from another model ({d.model or 'unknown'}); load "
            "it into a session of that model")
    if d.layer is not None and not 0 <= d.layer <= session.n_blocks:
        raise ValueError(f"direction {d.name!r} is at layer {d.layer} but {session.name} has "
                         f"hidden states 0..{session.n_blocks}")
    if d.fingerprint and d.fingerprint != session.fingerprint:
        warnings.warn(
            f"direction {d.name!r} was saved from {d.model or 'another model'} (fingerprint "
            f"{d.fingerprint}), not {session.name} ({session.fingerprint}); the widths match, "
            "so it is loaded, but its meaning may not transfer", stacklevel=3)
        return d.adopted_by(session)
    return d


def export_gguf(path: str | Path, direction: Direction, session: Session,
                layers: int | Sequence[int] | None = None) -> Path:
    """Write ``direction`` as a llama.cpp control vector (the file repeng's ``export_gguf``
    writes): ``general.architecture = "controlvector"``, ``controlvector.model_hint``,
    ``controlvector.layer_count`` and one float32 tensor ``direction.{k}`` per layer.

    llama.cpp adds ``direction.{k}`` to the output of block ``k`` (0-based), which is hidden
    state ``k + 1`` here, so ``k = layer - 1``; it refuses ``k = 0``, so layers are 2..n.
    Each vector is the residual steering vector scaled by the typical norm at its layer, so
    ``--control-vector-scaled file.gguf 0.25`` adds what ``Steer(d, alpha=0.25)`` adds.
    """
    import gguf

    layers = [direction.reading_layer()] if layers is None else layers
    layers = session.check_layers(layers)
    bad = [layer for layer in layers if layer < 2]
    if bad:
        raise ValueError(f"llama.cpp control vectors start at hidden state 2 (the output of "
                         f"block 1; it refuses direction.0), so layers {bad} cannot be exported")
    from .steering import residual_vector

    unit = residual_vector(session, direction).detach().cpu().float()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "controlvector")
    try:
        hint = getattr(session.model.config, "model_type", "") or session.name
        writer.add_string("controlvector.model_hint", hint)
        writer.add_uint32("controlvector.layer_count", len(layers))
        writer.add_string("general.name", direction.name)
        for layer in layers:
            vector = unit * session.geometry.typical_norm(layer)
            writer.add_tensor(f"direction.{layer - 1}", vector.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path
