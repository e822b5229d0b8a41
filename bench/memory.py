"""Peak memory of extracting all layers for many texts: float32, float16, float16 on disk.

Run: ``.venv/bin/python -m bench.memory`` (5,000 texts; ``--quick``: tiny model, 200 texts).
Each variant runs in its own process so that peak resident memory is its own. Besides peak
RSS, a sampling thread records peak anonymous memory (RssAnon): the part the kernel cannot
reclaim without swap. The on-disk store's pages are file-backed, so they count in RSS while
cached but can be written back and dropped under pressure.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import threading

from .common import report


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB (NaN where there is no /proc)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_mb() -> float:
    """This process's peak resident memory. VmHWM, unlike ru_maxrss, is not inherited from a
    large parent across exec on Linux."""
    peak = _status_mb("VmHWM")
    return peak if not math.isnan(peak) else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _PeakSampler(threading.Thread):
    """Samples a /proc/self/status field every few milliseconds and keeps the maximum."""

    def __init__(self, field: str = "RssAnon", every_s: float = 0.005):
        super().__init__(daemon=True)
        self.field, self.every_s, self.peak = field, every_s, _status_mb(field)
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(self.every_s):
            self.peak = max(self.peak, _status_mb(self.field))


VARIANTS = {  # name: (storage dtype, memory budget)
    "float32": ("float32", None),
    "float16": ("float16", None),
    "float16 on disk": ("float16", 1),  # a 1-byte budget forces the disk store
}


def _child(texts: int, variant: str, quick: bool) -> dict:
    import warnings

    import torch

    from reprlab import Session

    from .extract import bench_texts

    dtype, budget = VARIANTS[variant]
    session = Session.tiny() if quick else Session.load()
    before = _peak_mb()
    sampler = _PeakSampler()
    sampler.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-budget warning is expected here
        acts = session.activations(bench_texts(texts), dtype=getattr(torch, dtype),
                                   progress=False, memory_budget=budget)
    sampler.done.set()
    sampler.join()
    return {"before_mb": before, "peak_mb": _peak_mb(), "peak_anon_mb": sampler.peak,
            "stored_mb": acts.nbytes / 2**20, "on_disk": acts.on_disk}


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
    for variant in VARIANTS:
        cmd = [sys.executable, "-m", "bench.memory", "--child", variant, "--texts",
               str(args.texts)]
        out = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                             text=True, check=True)
        runs[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    results = {"texts": args.texts}
    for variant, r in runs.items():
        where = "on disk" if r["on_disk"] else "in RAM"
        results[f"{variant}: stored activations MB ({where})"] = r["stored_mb"]
        results[f"{variant}: peak RSS MB (model loaded: {r['before_mb']:.0f})"] = r["peak_mb"]
        results[f"{variant}: peak anonymous MB"] = r["peak_anon_mb"]
    results["ratio stored float16 / float32"] = (runs["float16"]["stored_mb"]
                                                 / runs["float32"]["stored_mb"])
    results["ratio peak anonymous, disk / float16 in RAM"] = (
        runs["float16 on disk"]["peak_anon_mb"] / runs["float16"]["peak_anon_mb"])
    report(f"memory of extracting all layers for {args.texts} texts", results)
    return results


if __name__ == "__main__":
    main()
