"""The GGUF -> safetensors conversion cache: keyed by content, checked before it is trusted.

A GGUF file is de-quantized once and saved as safetensors under
``cache_root()/converted/<stem>-<sha256 of the whole GGUF>``. The manifest, written last,
records the source's hash and each file's size, modification time and SHA-256; a cached
folder is used only when all of them match (a file whose modification time changed is hashed
in full, others by their header and samples; ``full=True`` hashes every file in full). Any
mismatch means: convert again.

The GGUF's own SHA-256 is remembered (``gguf-hashes.json``) by path, size, modification time,
inode and change time, and a sample of its content: a same-size file copied over the old one
with its modification time put back gets a new inode or change time (which no program can
set back) and different samples, so it is hashed again.

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


def content_hash(path: Path, *, remembered: bool = True) -> str:
    """SHA-256 of a GGUF file's whole content, remembered by path, size, mtime, inode and
    ctime and checked against a sample of the content (``remembered=False``: always hash)."""
    stat = path.stat()
    resolved = path.resolve()
    key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}"
    memo = cache_root() / _HASHES
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}
    entry = known.get(key)
    sample = sampled_sha256(path)
    if remembered and isinstance(entry, dict) and entry.get("sampled_sha256") == sample \
            and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = file_sha256(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        fresh = {k: v for k, v in known.items() if not k.startswith(f"{resolved}|")}
        fresh[key] = {"sha256": digest, "sampled_sha256": sample}
        _write_text_atomically(memo, json.dumps(fresh))
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


def cache_is_valid(folder: Path, source_hash: str | None = None, *, full: bool = False) -> bool:
    """Trust a cache folder only if its manifest is complete and every file matches it.

    The manifest must list a config and safetensors weights; each file must have its size
    and sampled hash, and its full SHA-256 too when its modification time changed (or with
    ``full=True``, always). With ``source_hash``, the manifest must name that GGUF content as
    its source.
    """
    return not cache_problems(folder, source_hash, full=full)


def cache_problems(folder: Path, source_hash: str | None = None, *,
                   full: bool = False) -> list[str]:
    """What is wrong with a cache folder (empty when it can be trusted): see
    :func:`cache_is_valid`. Each problem names the file and what did not match."""
    try:
        info = json.loads((folder / MANIFEST).read_text())
        files = info["files"]
        if info.get("format") != CACHE_FORMAT or not isinstance(files, dict):
            return [f"{MANIFEST}: unknown format or no file list"]
        if source_hash is not None and info.get("source_sha256") != source_hash:
            return [f"{MANIFEST}: converted from another GGUF file"]
        if "config.json" not in files or not any(n.endswith(".safetensors") for n in files):
            return [f"{MANIFEST}: lists no config.json or no safetensors weights"]
        if any(name != Path(name).name or name in ("", ".", "..") for name in files):
            return [f"{MANIFEST}: names a file outside the folder"]
        return [f"{name}: {why}" for name, entry in files.items()
                if (why := _file_problem(folder / name, entry, full))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return [f"{MANIFEST}: unreadable ({type(err).__name__}: {err})"]


def _file_problem(path: Path, entry: dict, full: bool) -> str | None:
    try:
        stat = path.stat()
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.st_size != entry["size"]:
        return f"{stat.st_size} bytes, the manifest says {entry['size']}"
    if sampled_sha256(path) != entry["sampled_sha256"]:
        return "sampled SHA-256 does not match the manifest"
    if (full or stat.st_mtime_ns != entry["mtime_ns"]) and file_sha256(path) != entry["sha256"]:
        return "SHA-256 does not match the manifest"
    return None


# -- GGUF header --------------------------------------------------------------------------------


class GGUFHeaderError(ValueError):
    """A GGUF header that does not match its tensors: refused before any model is built."""


# Metadata bounds, checked before anything is read item by item: the gguf reader transformers
# uses spends ~12 us per array item (4M empty strings: 16 minutes, 7 GB). A real model's
# largest arrays are its vocabulary (tokens, scores, types, merges).
MAX_METADATA_KEYS = 1 << 12
MAX_STRING_BYTES = 16 << 20  # one metadata string (chat templates are a few kB)
MAX_ARRAY_ITEMS = 1 << 20  # one metadata array, whatever its type
MAX_TOTAL_ITEMS = 1 << 22  # every array together
OTHER_ARRAY_ITEMS = 1 << 16  # an array that is not vocabulary-sized (not tokenizer.ggml.*)
_BLOB_KEYS = ("tokenizer.ggml.precompiled_charsmap",)  # bytes, not one item per token


def check_gguf(path: Path) -> None:
    """Check a GGUF header's sizes against its tensors before a model is built from it.

    The block count must equal the ``blk.N`` tensors present, head counts must be positive,
    the embedding width must match the token embedding, and every tensor must lie inside the
    file. A crafted header (``block_count = 10**9``) would otherwise exhaust memory. Metadata
    is bounded before it is read: at most 4,096 keys, 16 MiB per string, 1M items per array
    while reading, and then vocabulary-sized arrays only under ``tokenizer.ggml.*`` (merges up
    to four vocabularies, others at most 65,536 items, all together at most eight
    vocabularies plus 262,144).
    """
    sizes: dict[str, int] = {}
    try:
        fields, tensors = read_gguf_header(path, sizes=sizes)
    except GGUFHeaderError:
        raise
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
    _check_array_sizes(path, sizes, math.prod(embed[0]) // width if embed else None)


def _check_array_sizes(path: Path, sizes: dict[str, int], vocab: int | None) -> None:
    """Refuse metadata arrays larger than the vocabulary they could describe."""
    if vocab is None:
        return  # no token embedding to compare with: the reading bounds still held
    for key, n in sizes.items():
        if key in _BLOB_KEYS:
            limit = MAX_ARRAY_ITEMS
        elif key == "tokenizer.ggml.merges":  # Llama 3: 280,147 merges for 128,256 tokens
            limit = 4 * vocab + 256
        elif key.startswith("tokenizer.ggml."):
            limit = vocab + 256
        else:
            limit = OTHER_ARRAY_ITEMS
        if n > limit:
            raise GGUFHeaderError(
                f"{path.name}: metadata {key!r} is an array of {n} items but the model has "
                f"{vocab} tokens, so at most {limit} make sense: a crafted or broken file "
                "(transformers would read it item by item for minutes); re-download or "
                "re-convert it")
    total, limit = sum(sizes.values()), 8 * vocab + (1 << 18)
    if total > limit:
        raise GGUFHeaderError(
            f"{path.name}: its metadata arrays hold {total} items, more than {limit} for a "
            f"{vocab}-token vocabulary: a crafted or broken file; re-download or re-convert it")


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}


def read_gguf_header(path: Path, sizes: dict[str, int] | None = None
                     ) -> tuple[dict, dict[str, tuple[list[int], int]]]:
    """The metadata of a GGUF file (arrays of strings are skipped, not decoded) and, per
    tensor, its shape and the byte offset where its data ends. Reads only the header.

    Metadata bounds (see :func:`check_gguf`) are checked before each string or array is read,
    raising :class:`GGUFHeaderError`; ``sizes`` receives each array's item count by key.
    """
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    sizes = {} if sizes is None else sizes
    key = ""  # the metadata key being read, for error messages

    def bomb(what: str) -> GGUFHeaderError:
        return GGUFHeaderError(
            f"{path.name}: metadata {key!r} {what}: a crafted or broken file (reading it would "
            "take minutes and gigabytes); re-download or re-convert it")

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
            if n > MAX_STRING_BYTES:
                raise bomb(f"holds a {n / 2**20:.1f} MiB string; reprlab reads at most "
                           f"{MAX_STRING_BYTES >> 20} MiB per string")
            pos += n
            return bytes(buf[pos - n:pos]).decode("utf-8", "replace") if keep else None

        def value(kind, keep=True):
            if kind == 8:
                return string(keep)
            if kind == 9:
                inner, n = take("I"), take("Q")
                if n > len(buf):
                    raise ValueError(f"an array claims {n} items, more than the file's bytes")
                if n > MAX_ARRAY_ITEMS:
                    raise bomb(f"is an array of {n} items; reprlab reads at most "
                               f"{MAX_ARRAY_ITEMS} (a real vocabulary is far smaller)")
                sizes[key] = sizes.get(key, 0) + n
                if sum(sizes.values()) > MAX_TOTAL_ITEMS:
                    raise bomb(f"brings the metadata arrays to {sum(sizes.values())} items; "
                               f"reprlab reads at most {MAX_TOTAL_ITEMS} in all")
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
        if n_fields > MAX_METADATA_KEYS:
            raise GGUFHeaderError(f"{path.name}: the header claims {n_fields} metadata keys; "
                                  f"reprlab reads at most {MAX_METADATA_KEYS} (a real model has "
                                  "about 50): a crafted or broken file")
        fields = {}
        for _ in range(n_fields):
            key = string()
            fields[key] = value(take("I"), keep=not key.startswith("tokenizer.ggml."))
        infos = []
        key = "(tensor names)"
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


def write_cache(model, tok, target: Path, source: Path, source_hash: str, *,
                replace: bool = False) -> bool:
    """Write into a temporary sibling folder, add the manifest last, then rename into place.

    An existing folder that passes :func:`cache_is_valid` is kept (another process finished
    first) unless ``replace=True``: the caller found it unusable, so it is replaced, never
    left to fail again on every load. Returns whether the cache was written. A read-only or
    full cache is not fatal (the model in memory is fine): it warns and leaves nothing behind.
    A conversion killed midway leaves only a ``.tmp-*`` folder, which is never read and is
    swept by a later conversion.
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
            if not replace and cache_is_valid(target, source_hash):  # another process won
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
