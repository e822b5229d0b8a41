"""Directions on disk: a safetensors file of vectors with JSON metadata, and llama.cpp files.

One format for one direction or a whole registry: tensor ``"0"``, ``"1"``, ... holds each unit
vector (float32), and the safetensors header's metadata ``"reprlab"`` holds a JSON object with
the file's reprlab version and, per direction, its name, layer, site, method, space, model
name, fingerprint, width, blocks and ``info``. Nothing is pickled.

llama.cpp control vectors (the files repeng writes) go both ways: :func:`export_gguf` writes
one, :func:`import_gguf` reads one back. Functions that build directions take the Direction
class as ``cls`` (this module never imports it).

>>> d.save("sentiment.safetensors"); Direction.load("sentiment.safetensors", session=s)
... # doctest: +SKIP
>>> d.export_gguf("sentiment.gguf", s, layers=[10, 11, 12])    # llama.cpp --control-vector
... # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import gguf
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .geometry import residual_vector
from .model_ref import ModelRef, check_same_model
from .sites import from_llama_cpp_block, llama_cpp_block
from .version import __version__

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
    path = Path(path)
    entries = []
    for d in directions:
        ref = d.source
        entries.append({"name": d.name, "layer": d.layer, "site": d.site, "method": d.method,
                        "space": d.space, "model": d.model, "fingerprint": d.fingerprint,
                        "width": d.width, "blocks": ref.blocks if ref is not None else None,
                        "info": json_safe(d.info)})
    meta = {"format": FORMAT, "reprlab_version": __version__, "directions": entries}
    tensors = {str(i): d.vector.detach().cpu().float().contiguous().clone()
               for i, d in enumerate(directions)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"reprlab": json.dumps(meta)})
    return path


def load_directions(cls: type[Direction], path: str | Path, session: Session | None = None,
                    *, adopt: bool = False) -> list[Direction]:
    """Read the directions in ``path``; with ``session``, refuse those of another model.

    Another width is always an error; another fingerprint (same width, other weights) is an
    error unless ``adopt=True``, which marks them as ``session``'s (see
    :meth:`Direction.adopted_by`). Nothing is returned unless every direction fits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no directions file at {path}: save one with "
                                "d.save(path) or session.directions.save(path)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("reprlab", "null"))
            entries = _entries(meta, path)
            vectors = [f.get_tensor(str(i)) for i in range(len(entries))]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"cannot read directions from {path}: {err}") from None
    except Exception as err:  # safetensors raises its own error types on a damaged file
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    out = []
    for entry, vector in zip(entries, vectors):
        source = None
        if entry["fingerprint"] or entry["model"]:
            source = ModelRef(entry["model"], entry["fingerprint"], int(vector.numel()),
                              entry["blocks"] or 0)
        d = cls(entry["name"], vector, entry["layer"], entry["method"], entry["space"],
                info=entry["info"], source=source, site=entry["site"])
        out.append(d if session is None else _fit(d, session, path, adopt))
    return out


def _entries(meta, path: Path) -> list[dict]:
    """The per-direction metadata of a reprlab file, checked field by field."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a reprlab directions file (no "
                         "'reprlab' metadata)")
    entries = meta.get("directions")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'directions' in its metadata must be a list, got "
                         f"{type(entries).__name__}: the file is damaged or was not written "
                         "by reprlab")
    out = []
    for i, e in enumerate(entries):
        where = f"{path}: direction {i}"
        if not isinstance(e, dict):
            raise ValueError(f"{where} is {type(e).__name__}, not an object")
        for key in ("name", "method"):
            if not isinstance(e.get(key), str) or not e[key].strip():
                raise ValueError(f"{where} has no valid {key!r} (got {e.get(key)!r})")
        layer = e.get("layer")
        if layer is not None and (isinstance(layer, bool)
                                  or not isinstance(layer, numbers.Integral)):
            raise ValueError(f"{where} ({e['name']!r}) has layer {layer!r}: a layer is an "
                             "int or null")
        space = e.get("space", "residual")
        if space not in ("residual", "unembedding"):
            raise ValueError(f"{where} has space {space!r}: 'residual' or 'unembedding'")
        info = e.get("info") or {}
        blocks = e.get("blocks")
        out.append({"name": e["name"], "method": e["method"], "layer": layer, "space": space,
                    "site": e.get("site") if isinstance(e.get("site"), str) else None,
                    "model": str(e.get("model") or ""),
                    "fingerprint": str(e.get("fingerprint") or ""),
                    "blocks": blocks if isinstance(blocks, int) else None,
                    "info": info if isinstance(info, dict) else {"info": info}})
    return out


def _fit(d: Direction, session: Session, path: Path, adopt: bool) -> Direction:
    if d.width != session.width:
        raise ValueError(
            f"direction {d.name!r} in {path} has {d.width} dims but {session.name} has width "
            f"{session.width}: it was saved from another model ({d.model or 'unknown'}); load "
            "it into a session of that model")
    if d.layer is not None and not 0 <= d.layer <= session.n_blocks:
        raise ValueError(f"direction {d.name!r} is at layer {d.layer} but {session.name} has "
                         f"hidden states 0..{session.n_blocks}")
    if d.site is not None:
        session.site(d.site)  # a clear error when the site does not exist here
    if adopt:
        return d.adopted_by(session)
    try:
        check_same_model(d.source, session, what=f"direction {d.name!r} in {path}")
    except ValueError as err:
        raise ValueError(f"{err}; or load it with adopt=True to use it here on purpose") \
            from None
    return d if d.source is not None else d.adopted_by(session)


def export_gguf(path: str | Path, direction: Direction, session: Session,
                layers: int | Sequence[int] | None = None,
                sites: Sequence[str] | None = None) -> Path:
    """Write ``direction`` as a llama.cpp control vector (the file repeng's ``export_gguf``
    writes): ``general.architecture = "controlvector"``, ``controlvector.model_hint``,
    ``controlvector.layer_count`` and one float32 tensor ``direction.{k}`` per site.

    llama.cpp adds ``direction.{k}`` to the output of block ``k`` (0-based): site
    ``blocks.k.resid_post``, hidden state ``k + 1`` (:func:`~reprlab.sites.llama_cpp_block`).
    It refuses ``k = 0`` and cannot edit after the final norm. Each vector is the residual
    steering vector scaled by the typical norm of the stream it is added to, so
    ``--control-vector-scaled file.gguf 0.25`` adds what ``Steer(d, alpha=0.25)`` adds there.
    """
    if sites is None:
        specs = [direction.reading_site()] if layers is None else list(
            session.check_layers(layers))
    else:
        specs = list(sites)
    where = sorted({session.site(s) for s in specs})
    blocks = [llama_cpp_block(w, session.n_blocks) for w in where]
    unit = residual_vector(session, direction).detach().cpu().float()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "controlvector")
    try:
        hint = getattr(session.model.config, "model_type", "") or session.name
        writer.add_string("controlvector.model_hint", hint)
        writer.add_uint32("controlvector.layer_count", len(blocks))
        writer.add_string("general.name", direction.name)
        for w, k in zip(where, blocks):
            vector = unit * session.geometry.typical_norm(w)
            writer.add_tensor(f"direction.{k}", vector.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def import_gguf(cls: type[Direction], path: str | Path, session: Session) -> list[Direction]:
    """Read a llama.cpp control vector written by :func:`export_gguf` (or repeng): one
    direction per ``direction.k`` tensor, at site ``blocks.k.resid_post``, named
    ``"{name}@blocks.k"``, with ``info["scale"]`` the tensor's length in typical norms there
    (``Steer(d, alpha=info["scale"])`` adds that tensor)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no control vector at {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # gguf raises assorted errors on a damaged file
        raise ValueError(f"{path} is not a readable GGUF file: {err}") from None
    name = path.stem
    field = reader.fields.get("general.name")
    if field is not None and field.data:
        name = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    out = []
    for tensor in reader.tensors:
        if not tensor.name.startswith("direction."):
            continue
        k = int(tensor.name.split(".", 1)[1])
        where = from_llama_cpp_block(k, session.n_blocks)
        vector = torch.as_tensor(np.array(tensor.data, dtype=np.float32).reshape(-1))
        if vector.numel() != session.width:
            raise ValueError(f"{path}: {tensor.name} has {vector.numel()} dims but "
                             f"{session.name} has width {session.width}")
        layer = where.hidden_state(session.n_blocks)
        scale = float(vector.norm()) / session.geometry.typical_norm(where)
        out.append(cls(f"{name}@blocks.{k}", vector, layer, "control_vector",
                       info={"file": str(path), "llama_cpp_block": k, "scale": scale},
                       source=session.ref, site=None if layer is not None else where.name))
    if not out:
        raise ValueError(f"{path} holds no direction.k tensors: it is not a control vector")
    return sorted(out, key=lambda d: d.info["llama_cpp_block"])
