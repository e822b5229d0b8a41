"""Command line: ``python -m reprlab verify-cache [--repair] [--cache DIR]``.

``verify-cache`` hashes every file of every cached GGUF conversion in full against its
manifest, reads every cached tensor for NaN, infinite or implausibly large values, and checks
the embedded GGUF against the SHA-256 its package recorded. It exits 1 when anything is
wrong; ``--repair`` removes the bad conversions (the next load converts again).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from .conversion import CACHE_ENV, cache_problems, cache_root, sweep_stale
from .loading import WEIGHT_LIMIT, ModelLoadError, check_embedded_record, embedded_gguf_path


def tensor_problems(folder: Path) -> list[str]:
    """Cached tensors holding NaN, infinite values or values above ``WEIGHT_LIMIT``."""
    problems = []
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as f:
                for name in f.keys():
                    t = f.get_tensor(name)
                    if not t.is_floating_point() or t.numel() == 0:
                        continue
                    lo, hi = (v.item() for v in torch.aminmax(t))
                    if not (math.isfinite(lo) and math.isfinite(hi)):
                        problems.append(f"{weights.name}: {name} holds NaN or infinite values")
                    elif max(-lo, hi) > WEIGHT_LIMIT:
                        problems.append(f"{weights.name}: {name} holds {max(-lo, hi):.3g}")
        except Exception as err:  # safetensors raises its own types on a damaged file
            problems.append(f"{weights.name}: unreadable ({type(err).__name__}: {err})")
    return problems


def verify_cache(root: Path, *, repair: bool = False, out=None) -> int:
    """Check every cached conversion under ``root``; returns the number found bad."""
    out = out or sys.stdout
    converted = root / "converted"
    folders = sorted(p for p in converted.iterdir() if p.is_dir()
                     and not p.name.startswith(".tmp-")) if converted.is_dir() else []
    bad = 0
    for folder in folders:
        problems = cache_problems(folder, full=True)
        problems = problems or tensor_problems(folder)
        if not problems:
            size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
            print(f"ok       {folder} ({size / 1e6:.1f} MB hashed in full)", file=out)
            continue
        bad += 1
        print(f"CORRUPT  {folder}", file=out)
        for problem in problems:
            print(f"           {problem}", file=out)
        if repair:
            shutil.rmtree(folder, ignore_errors=True)
            print("           removed: the next load converts the GGUF file again", file=out)
    if repair and converted.is_dir():
        for tmp in sweep_stale(converted):
            print(f"removed  {tmp} (left by a killed conversion)", file=out)
    try:
        embedded = embedded_gguf_path()
        check_embedded_record(embedded)
        print(f"ok       {embedded} (matches its package's recorded SHA-256)", file=out)
    except ModelLoadError as err:
        if "not installed" not in str(err):
            bad += 1
            print(f"CORRUPT  {err}", file=out)
    if not folders:
        print(f"no cached conversions in {converted}", file=out)
    if bad and not repair:
        print(f"{bad} problem(s) found: run `python -m reprlab verify-cache --repair` to remove "
              "the bad conversions (the next load converts again)", file=out)
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m reprlab``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reprlab",
                                     description="reprlab maintenance commands")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify-cache", help="hash every cached conversion in full and check its tensors",
        description="Hash every file of every cached GGUF conversion in full against its "
                    "manifest and check every cached tensor for NaN, infinite or huge values; "
                    "exit 1 if anything is wrong.")
    verify.add_argument("--repair", action="store_true",
                        help="remove bad conversions (the next load converts again)")
    verify.add_argument("--cache", type=Path, default=None,
                        help=f"cache folder (default: ${CACHE_ENV} or the user cache folder)")
    args = parser.parse_args(argv)
    root = args.cache.expanduser() if args.cache else cache_root()
    if args.cache and not root.is_dir():
        parser.error(f"--cache {os.fspath(root)!r} is not a folder")
    return 1 if verify_cache(root, repair=args.repair) else 0


if __name__ == "__main__":
    sys.exit(main())
