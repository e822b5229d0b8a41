"""Peak memory of extracting all layers for many texts, float32 vs float16 storage.

Run: ``.venv/bin/python -m bench.memory`` (5,000 texts; ``--quick``: tiny model, 200 texts).
Each variant runs in its own process so that peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from .common import report


def _peak_mb() -> float:
    """This process's peak resident memory. VmHWM, unlike ru_maxrss, is not inherited from a
    large parent across exec on Linux."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(texts: int, dtype: str, quick: bool) -> dict:
    import torch

    from toolkit import Session

    from .extract import bench_texts

    session = Session.tiny() if quick else Session.load()
    before = _peak_mb()
    acts = session.activations(bench_texts(texts), dtype=getattr(torch, dtype), progress=False)
    peak = _peak_mb()
    stored = acts.values.numel() * acts.values.element_size() / 2**20
    return {"before_mb": before, "peak_mb": peak, "stored_mb": stored}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.texts = 200
    if args.child:
        print(json.dumps(_child(args.texts, args.child, args.quick)))
        return {}
    runs = {}
    for dtype in ("float32", "float16"):
        cmd = [sys.executable, "-m", "bench.memory", "--child", dtype, "--texts", str(args.texts)]
        out = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                             text=True, check=True)
        runs[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
    results = {"texts": args.texts}
    for dtype, r in runs.items():
        results[f"{dtype}: stored activations MB"] = r["stored_mb"]
        results[f"{dtype}: peak RSS MB (model loaded: {r['before_mb']:.0f})"] = r["peak_mb"]
    results["ratio stored float16 / float32"] = (runs["float16"]["stored_mb"]
                                                 / runs["float32"]["stored_mb"])
    report(f"memory of extracting all layers for {args.texts} texts", results)
    return results


if __name__ == "__main__":
    main()
