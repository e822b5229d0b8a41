"""Memory budgets, and the float16 on-disk store extraction streams into when over budget.

>>> parse_bytes("1.5GB"), parse_bytes("512 MiB"), parse_bytes(10_000)
(1500000000, 536870912, 10000)
>>> format_bytes(1_500_000)
'1.5 MB'

An over-budget extraction writes each batch into a memory-mapped float16 file instead of a
tensor in RAM: the kernel can write those pages back and drop them under pressure, where RAM
would have run out. The file is unlinked as soon as it is mapped, so it vanishes with the last
tensor that uses it (and with the process, even after a crash).
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path

import torch

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(size: int | float | str) -> int:
    """Bytes from an int or a string such as ``"500MB"``, ``"2 GiB"`` or ``"1.5GB"``.

    Fractions of a byte are dropped; a size under one byte (``"0.5"``, which would become 0)
    is refused like 0 is.
    """
    if isinstance(size, numbers.Real) and not isinstance(size, bool):
        if not math.isfinite(size) or size <= 0:
            raise ValueError(f"a memory budget must be a positive number of bytes or a size such "
                             f"as '2GB', got {size}")
        return _whole_bytes(size, size)
    if not isinstance(size, str):
        raise TypeError(f"a memory budget must be bytes or a size such as '2GB', got "
                        f"{type(size).__name__} {size!r:.40}")
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", size)
    unit = match.group(2).upper() if match else None
    unit = unit + "B" if unit in ("K", "M", "G", "T") else unit  # "2G" means 2 GB
    if not match or unit not in _UNITS:
        raise ValueError(f"cannot read {size!r} as a size: use bytes or e.g. '500MB', '2GiB'")
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"a memory budget must be positive, got {size!r}")
    return _whole_bytes(value, size)


def _whole_bytes(value: float, given) -> int:
    if value < 1:
        raise ValueError(f"a memory budget must be at least 1 byte, got {given!r} ({value:g} "
                         "bytes): add a unit, e.g. '0.5GB' or '500MB'")
    return int(value)


def format_bytes(nbytes: int) -> str:
    """``1_500_000`` -> ``"1.5 MB"``."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"


def available_memory() -> int:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit
    (containers such as Binder report the host's memory in /proc/meminfo)."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge v1 value: no limit
            candidates.append(max(int(limit) - usage, 0))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: never force the disk store
    return min(candidates)


def default_budget() -> int:
    """``$REPRLAB_MEMORY_BUDGET`` if set, else half the memory available right now."""
    configured = os.environ.get("REPRLAB_MEMORY_BUDGET")
    if not configured:
        return available_memory() // 2
    try:
        return parse_bytes(configured)
    except ValueError as err:
        raise ValueError(f"REPRLAB_MEMORY_BUDGET={configured!r}: {err}") from None


def disk_tensor(shape: tuple[int, ...], dtype: torch.dtype, folder: Path) -> torch.Tensor:
    """A zero-filled tensor of ``shape`` backed by a memory-mapped file in ``folder``.

    The file's space is reserved before it is mapped, so a disk that is (or fills up) too
    small raises ``OSError`` with the sizes and leaves no file, instead of crashing later.
    """
    numel = math.prod(shape)
    nbytes = numel * dtype.itemsize
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise OSError(
            f"the on-disk activation store needs {format_bytes(nbytes)} but {folder} has only "
            f"{format_bytes(free)} free: extract fewer layers or texts, or set REPRLAB_CACHE "
            "to a larger disk"
        )
    fd, name = tempfile.mkstemp(prefix="activations-", suffix=".f16", dir=folder)
    try:
        _reserve(fd, nbytes)  # every block allocated now: a full disk fails here, not later
    except OSError as err:
        os.close(fd)
        _remove_quietly(name)
        raise OSError(
            err.errno, f"could not reserve {format_bytes(nbytes)} for the on-disk activation "
            f"store in {folder} ({os.strerror(err.errno or 0) or err}): free some space, extract "
            "fewer layers or texts, or set REPRLAB_CACHE to a larger disk") from err
    os.close(fd)
    values = torch.from_file(name, shared=True, size=numel, dtype=dtype).view(shape)
    try:
        os.unlink(name)  # POSIX keeps the data while it is mapped
    except OSError:  # Windows cannot unlink a mapped file: remove it when the tensor dies
        weakref.finalize(values, _remove_quietly, name)
    return values


def _reserve(fd: int, nbytes: int) -> None:
    """Allocate ``nbytes`` on disk for ``fd`` (a sparse file would fault with SIGBUS when the
    disk fills while it is mapped): ``posix_fallocate``, else write zeros."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
        return
    except AttributeError:  # not on this platform
        pass
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    chunk = memoryview(bytes(1 << 20))
    os.lseek(fd, 0, os.SEEK_SET)
    left = nbytes
    while left:
        left -= os.write(fd, chunk[: min(len(chunk), left)])
    os.fsync(fd)


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


def is_file_backed(values: torch.Tensor) -> bool:
    """Whether ``values`` lives in a memory-mapped file rather than RAM."""
    return values.untyped_storage().filename is not None
