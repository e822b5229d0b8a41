"""The GGUF -> safetensors conversion cache: keyed by content, checked before it is trusted.

A GGUF file is de-quantized once and saved as safetensors under
``cache_root()/converted/<stem>-<sha256 of the whole GGUF>``. The manifest, written last,
records the source's hash and each file's size, modification time and SHA-256; a cached
folder is used only when all of them match (a file whose modification time changed is hashed
in full, others by their header and samples). Any mismatch means: convert again.

>>> folder = converted_cache_dir(Path("model.gguf"))     # doctest: +SKIP
>>> cache_is_valid(folder)                               # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import shutil
import struct
import tempfile
import time
import warnings
from pathlib import Path

CACHE_ENV = "REPRLAB_CACHE"
MANIFEST = "reprlab-cache.json"
CACHE_FORMAT = 2
_HASHES = "gguf-hashes.json"  # content hashes of GGUF files by (path, size, mtime)
_STALE_AFTER_S = 24 * 3600  # a .tmp-* folder this old is left over from a killed conversion


def cache_root() -> Path:
    """Folder holding converted models: ``$REPRLAB_CACHE`` or the user cache directory."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("reprlab"))


# -- keys ---------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """SHA-256 of a GGUF file's whole content, remembered by path, size and mtime."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = cache_root() / _HASHES
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    digest = file_sha256(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        fresh = {k: v for k, v in known.items() if not k.startswith(f"{path.resolve()}|")} \
            if isinstance(known, dict) else {}
        _write_text_atomically(memo, json.dumps({**fresh, key: digest}))
    except OSError:
        pass  # a read-only cache only costs hashing again next time
    return digest


def converted_cache_dir(gguf: Path, digest: str | None = None) -> Path:
    """Cache folder for one GGUF file, keyed by the SHA-256 of its whole content."""
    digest = digest or content_hash(gguf)
    return cache_root() / "converted" / f"{gguf.stem}-{digest[:16]}"


# -- checking -----------------------------------------------------------------------------------


def sampled_sha256(path: Path, samples: int = 64, block: int = 4096) -> str:
    """SHA-256 of a file's size, first 64 KiB (a safetensors header) and ``samples`` blocks
    spread evenly through it: cheap, and catches most corruption."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 16))
        for i in range(samples):
            f.seek(size * i // samples)
            digest.update(f.read(block))
    return digest.hexdigest()


def cache_is_valid(folder: Path, source_hash: str | None = None) -> bool:
    """Trust a cache folder only if its manifest is complete and every file matches it.

    The manifest must list a config and safetensors weights; each file must have its size
    and sampled hash, and its full SHA-256 too when its modification time changed. With
    ``source_hash``, the manifest must name that GGUF content as its source.
    """
    try:
        info = json.loads((folder / MANIFEST).read_text())
        files = info["files"]
        if info.get("format") != CACHE_FORMAT or not isinstance(files, dict):
            return False
        if source_hash is not None and info.get("source_sha256") != source_hash:
            return False
        if "config.json" not in files or not any(n.endswith(".safetensors") for n in files):
            return False
        if any(name != Path(name).name or name in ("", ".", "..") for name in files):
            return False  # only plain file names inside the folder
        return all(_file_matches(folder / name, entry) for name, entry in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _file_matches(path: Path, entry: dict) -> bool:
    stat = path.stat()
    if stat.st_size != entry["size"] or sampled_sha256(path) != entry["sampled_sha256"]:
        return False
    if stat.st_mtime_ns != entry["mtime_ns"]:
        return file_sha256(path) == entry["sha256"]
    return True


# -- GGUF header --------------------------------------------------------------------------------


class GGUFHeaderError(ValueError):
    """A GGUF header that does not match its tensors: refused before any model is built."""


def check_gguf(path: Path) -> None:
    """Check a GGUF header's sizes against its tensors before a model is built from it.

    The block count must equal the ``blk.N`` tensors present, head counts must be positive,
    the embedding width must match the token embedding, and every tensor must lie inside the
    file. A crafted header (``block_count = 10**9``) would otherwise exhaust memory.
    """
    try:
        fields, tensors = read_gguf_header(path)
    except (OSError, ValueError, struct.error) as err:
        raise GGUFHeaderError(f"{path.name} is not a readable GGUF file ({err})") from err
    arch = fields.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFHeaderError(f"{path.name} names no general.architecture")
    size = path.stat().st_size
    blocks = set()
    for name, (_shape, end) in tensors.items():
        if end > size:
            raise GGUFHeaderError(f"{path.name}: tensor {name} ends past the end of the file "
                                  "(truncated or crafted file)")
        parts = name.split(".")
        if parts[0] == "blk" and len(parts) > 1 and parts[1].isdigit():
            blocks.add(int(parts[1]))
    count = fields.get(f"{arch}.block_count")
    if not isinstance(count, int) or count != len(blocks) or blocks != set(range(count)):
        raise GGUFHeaderError(
            f"{path.name}: {arch}.block_count is {count!r} but the file holds tensors for "
            f"{len(blocks)} blocks: the header does not match the weights (crafted or broken "
            "file); re-download or re-convert it")
    for key in ("attention.head_count", "attention.head_count_kv"):
        heads = fields.get(f"{arch}.{key}")
        values = heads if isinstance(heads, list) else [heads]
        if heads is not None and not all(isinstance(h, int) and h > 0 for h in values):
            raise GGUFHeaderError(f"{path.name}: {arch}.{key} is {heads!r}; every layer needs "
                                  "at least one attention head (broken file)")
    width = fields.get(f"{arch}.embedding_length")
    embed = tensors.get("token_embd.weight")
    if not isinstance(width, int) or width <= 0 or (embed is not None and width not in embed[0]):
        raise GGUFHeaderError(f"{path.name}: {arch}.embedding_length is {width!r} but the "
                              f"token embedding has shape {embed and embed[0]} (broken file)")
    context = fields.get(f"{arch}.context_length")
    if context is not None and not (isinstance(context, int) and 0 < context <= 1 << 24):
        raise GGUFHeaderError(f"{path.name}: {arch}.context_length is {context!r}, not a "
                              "context length from 1 to 16M tokens (broken file)")


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}


def read_gguf_header(path: Path) -> tuple[dict, dict[str, tuple[list[int], int]]]:
    """The metadata of a GGUF file (arrays of strings are skipped, not decoded) and, per
    tensor, its shape and the byte offset where its data ends. Reads only the header."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos = 0

        def take(fmt):
            nonlocal pos
            values = struct.unpack_from("<" + fmt, buf, pos)
            pos += struct.calcsize("<" + fmt)
            return values[0] if len(values) == 1 else values

        def string(keep=True):
            nonlocal pos
            n = take("Q")
            if pos + n > len(buf):
                raise ValueError("a string runs past the end of the file")
            pos += n
            return bytes(buf[pos - n:pos]).decode("utf-8", "replace") if keep else None

        def value(kind, keep=True):
            if kind == 8:
                return string(keep)
            if kind == 9:
                inner, n = take("I"), take("Q")
                if n > len(buf):
                    raise ValueError(f"an array claims {n} items, more than the file's bytes")
                if inner in _SCALARS and inner != 8:  # fixed size: read or skip at once
                    nonlocal pos
                    fmt = f"<{n}{_SCALARS[inner]}"
                    out = list(struct.unpack_from(fmt, buf, pos)) if keep and n <= 4096 else None
                    pos += struct.calcsize(fmt)
                    return out
                items = [value(inner, keep and n <= 4096) for _ in range(n)]
                return items if keep and n <= 4096 else None
            if kind not in _SCALARS:
                raise ValueError(f"unknown metadata type {kind}")
            return take(_SCALARS[kind])

        if bytes(buf[:4]) != b"GGUF":
            raise ValueError("no GGUF magic number")
        pos = 4
        version = take("I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old; convert it again")
        n_tensors, n_fields = take("Q"), take("Q")
        if n_tensors > len(buf) or n_fields > len(buf):
            raise ValueError("the header claims more entries than the file has bytes")
        fields = {}
        for _ in range(n_fields):
            key = string()
            fields[key] = value(take("I"), keep=not key.startswith("tokenizer.ggml."))
        infos = []
        for _ in range(n_tensors):
            name = string()
            n_dims = take("I")
            if n_dims > 8:
                raise ValueError(f"tensor {name} has {n_dims} dimensions")
            shape = [take("Q") for _ in range(n_dims)]
            infos.append((name, shape, take("I"), take("Q")))
        align = fields.get("general.alignment", 32)
        start = -(-pos // align) * align
        tensors = {}
        for name, shape, kind, offset in infos:
            try:
                block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
            except ValueError:
                raise ValueError(f"tensor {name} has unknown type {kind}") from None
            tensors[name] = (shape, start + offset + math.prod(shape) // block * nbytes)
    return fields, tensors


# -- writing ------------------------------------------------------------------------------------


def write_cache(model, tok, target: Path, source: Path, source_hash: str) -> bool:
    """Write into a temporary sibling folder, add the manifest last, then rename into place.

    Returns whether the cache was written. A read-only or full cache is not fatal (the model in
    memory is fine): it warns and leaves nothing behind. A conversion killed midway leaves
    only a ``.tmp-*`` folder, which is never read and is swept by a later conversion.
    """
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-{os.getpid()}-",
                                    dir=target.parent))
        tmp.chmod(0o755)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        files = {}
        for p in sorted(tmp.iterdir()):
            if p.is_file():
                files[p.name] = {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns,
                                 "sha256": file_sha256(p), "sampled_sha256": sampled_sha256(p)}
        manifest = {"format": CACHE_FORMAT, "source": str(source),
                    "source_sha256": source_hash, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if target.exists():
            if cache_is_valid(target, source_hash):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return True
            shutil.rmtree(target, ignore_errors=True)  # stale or corrupted: replaced
        os.replace(tmp, target)
        return True
    except Exception as err:  # OSError, SafetensorError on a full disk, ...
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        warnings.warn(
            f"could not write the converted model to the cache in {target.parent} "
            f"({type(err).__name__}: {err}): the model is loaded without caching, so the next "
            f"load converts it again; free some space or set {CACHE_ENV} to a writable folder",
            stacklevel=3)
        return False
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_stale(folder: Path) -> list[Path]:
    """Remove ``.tmp-*`` folders left by killed conversions (their process is gone, or they
    are over a day old); returns what was removed."""
    removed = []
    for tmp in folder.glob(".tmp-*"):
        if tmp.is_dir() and _is_stale(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _is_stale(tmp: Path) -> bool:
    try:
        if time.time() - tmp.stat().st_mtime > _STALE_AFTER_S:
            return True
    except OSError:
        return False
    pid = tmp.name.rsplit("-", 2)[-2] if tmp.name.count("-") >= 2 else ""
    if not pid.isdigit():
        return False  # an old-style name: only its age tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _write_text_atomically(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(name, path)


__all__ = ["GGUFHeaderError", "cache_is_valid", "cache_root", "check_gguf", "content_hash",
           "converted_cache_dir", "read_gguf_header", "sweep_stale", "write_cache"]
