"""Peak memory of extracting all layers for many texts: float32, float16, float16 on disk;
and of each view's first computation.

Run: ``.venv/bin/python -m bench.memory`` (5,000 texts; ``--quick``: tiny model, 200 texts);
``--views``: the peak of each Explorer view's first computation on the embedded model, each in
its own process, and of the Binder-shaped walk through every tab and choice (see
:func:`exercise_explorer`).
Each variant runs in its own process so that peak resident memory is its own. Besides peak
RSS, a sampling thread records peak anonymous memory (RssAnon): the part the kernel cannot
reclaim without swap. The on-disk store's pages are file-backed, so they count in RSS while
cached but can be written back and dropped under pressure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    parser.add_argument("--views", action="store_true",
                        help="peak memory of each view's first computation instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.views:
        return views_main(args.quick, args.child)
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


# -- views ----------------------------------------------------------------------------------------

# Binder gives 2 GB; after the model loads, default_budget() there is half of the ~1.4 GB left.
BINDER_LIMIT_MB, BINDER_BUDGET = 2000, "700MB"
BINDER_START = Path(__file__).resolve().parents[1] / "binder" / "start"


def binder_env() -> dict[str, str]:
    """The environment a Binder kernel runs in: the variables ``binder/start`` exports (the
    malloc arena cap), and Binder's activation budget."""
    exported = dict(re.findall(r"^export (\w+)=(\S+)$", BINDER_START.read_text(), re.M))
    return {**exported, "REPRLAB_MEMORY_BUDGET": BINDER_BUDGET}
CHOICES = ("Dropdown", "ToggleButtons", "RadioButtons", "Select")


def settle(view, timeout: float = 300) -> None:
    """Wait until ``view`` has no background work left (work may submit further work, and a
    debounce timer, like the steering view's, may be about to start some)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        timer = getattr(view, "_timer", None)
        if timer is not None and timer.is_alive():
            timer.join(max(deadline - time.monotonic(), 0.01))
            continue
        worker = view._worker
        if worker is None or not worker.is_alive():
            if view._worker is worker:
                return
            continue
        worker.join(max(deadline - time.monotonic(), 0.01))
    raise TimeoutError(f"{type(view).__name__} still busy after {timeout:.0f} s")


def choice_controls(view) -> list:
    """The view's own choice controls (dropdowns, toggle buttons) with more than one option."""
    return [(name, w) for name, w in vars(view).items()
            if type(w).__name__ in CHOICES and len(getattr(w, "options", ())) > 1]


def exercise_explorer(explorer, log=print) -> dict[str, float]:
    """Open every tab of ``explorer`` and switch each choice of each view once (to the next
    option: another data set, method, geometry, cycle, mode...), waiting for the work each
    starts. Returns the peak RSS in MB after each step, keyed ``"tab: control=value"``.

    UMAP is included: the circular view's method control goes from PCA to UMAP. Raises
    ``RuntimeError`` naming the steps where a view showed an error.
    """
    peaks, errors = {}, []
    for index in range(len(explorer.tabs.children)):
        explorer.tabs.selected_index = index
        view = explorer.view(index)
        title = explorer.tabs.get_title(index)
        steps = [(None, None)] + choice_controls(view)
        for name, control in steps:
            error = getattr(view, "last_error", None)
            key = f"{title}: opened"
            if control is not None:
                options = [o[1] if isinstance(o, tuple) else o for o in control.options]
                if control.value not in options:
                    continue
                control.value = options[(options.index(control.value) + 1) % len(options)]
                key = f"{title}: {name}={control.value}"
            settle(view)
            for thread in threading.enumerate():  # e.g. the UMAP warm-up
                if thread.name == "umap-warmup":
                    thread.join(300)
            settle(view)
            peaks[key] = _peak_mb()
            log(f"{key}: peak {peaks[key]:.0f} MB")
            if getattr(view, "last_error", None) is not error:
                errors.append(f"{key}: {view.last_error!r}")
    for view in explorer.views.values():  # nothing may still run when the process exits
        settle(view)
    if errors:
        raise RuntimeError("views showed errors: " + "; ".join(errors))
    return peaks


def _view_child(index: int, quick: bool) -> dict:
    from reprlab import Session
    from reprlab.widgets.explorer import TABS

    session = Session.tiny() if quick else Session.load()
    before = _peak_mb()
    title, cls = TABS[index]
    start = time.perf_counter()
    view = cls(session, background=False)
    seconds = time.perf_counter() - start
    error = getattr(view, "last_error", None)
    if error is not None:
        raise RuntimeError(f"{title} failed: {error}")
    return {"title": title, "before_mb": before, "peak_mb": _peak_mb(), "seconds": seconds}


def _explorer_child(quick: bool) -> dict:
    from reprlab import Session
    from reprlab.widgets import Explorer

    session = Session.tiny() if quick else Session.load()
    before = _peak_mb()
    peaks = exercise_explorer(Explorer(session), log=lambda line: print(line, file=sys.stderr))
    return {"before_mb": before, "peak_mb": _peak_mb(), "steps": peaks,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def views_main(quick: bool = False, child: str | None = None) -> dict:
    """Peak RSS of each view's first computation (own process each), then of the whole walk."""
    if child is not None:
        out = _explorer_child(quick) if child == "explorer" else _view_child(int(child), quick)
        print(json.dumps(out))
        return {}
    from reprlab.widgets.explorer import TABS

    results = {}
    flag = ["--quick"] if quick else []
    for index in [*range(len(TABS)), "explorer"]:
        cmd = [sys.executable, "-m", "bench.memory", "--views", "--child", str(index), *flag]
        env = dict(os.environ)
        if index == "explorer":  # the walk runs as on Binder, as the Binder test does
            env = {**binder_env(), **env}
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # stderr: progress
        if out.returncode:
            raise RuntimeError(f"{cmd} failed (exit {out.returncode})")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{index}: {r['peak_mb']:.0f} MB", file=sys.stderr)
        if index == "explorer":
            results[f"Explorer, every tab and choice once, {env['REPRLAB_MEMORY_BUDGET']} "
                    f"budget: peak RSS MB (model loaded: {r['before_mb']:.0f})"] = r["peak_mb"]
        else:
            results[f"{r['title']}: first computation peak RSS MB (model loaded: "
                    f"{r['before_mb']:.0f})"] = r["peak_mb"]
            results[f"{r['title']}: first computation s"] = r["seconds"]
    results["ratio highest peak / Binder's 2 GB (target < 1)"] = max(
        v for k, v in results.items() if "MB" in k) / BINDER_LIMIT_MB
    report("peak memory of each view's first computation", results)
    return results


if __name__ == "__main__":
    main()
