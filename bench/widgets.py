"""Slider-to-redraw latency of each view: the Python handler time from a layer change to the
updated figure, from cached results (no model call), vs. the first computation.

Run: ``.venv/bin/python -m bench.widgets`` (``--quick``: tiny model).
"""

from __future__ import annotations

import argparse
import time

from reprlab import Session

from .common import report


def _median_move(slider, layers) -> float:
    times = []
    for layer in layers:
        start = time.perf_counter()
        slider.value = layer
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def main(argv=None) -> dict:
    from reprlab.widgets import CircularMap, ConceptProjection, ProbeCurves, SteeringPanel

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    session = Session.tiny() if args.quick else Session.load()
    layers = [3, 1, 4, 2] if args.quick else [4, 8, 12, 16, 20, 24, 10, 14]
    results = {}
    for name, make, slider in [
        ("ProbeCurves", lambda: ProbeCurves(session, background=False), "layer"),
        ("CircularMap", lambda: CircularMap(session, background=False, warm=False), "layer"),
    ]:
        start = time.perf_counter()
        view = make()
        results[f"{name}: first computation ms"] = (time.perf_counter() - start) * 1000
        calls = session.model_calls
        results[f"{name}: layer slider redraw ms (median)"] = _median_move(
            getattr(view, slider), layers)
        assert session.model_calls == calls, f"{name} reran the model on a slider move"
    view = ConceptProjection(session, background=False)
    results["ConceptProjection: layer change ms (median; projections from cache)"] = \
        _median_move(view.layer, layers)
    view = SteeringPanel(session, background=False)
    view.max_tokens.value = 10
    results["SteeringPanel: alpha change ms (median; regenerates 10 tokens)"] = _median_move(
        view.alpha, [0.1, -0.1, 0.2, -0.2])
    report(f"widget latency on {session.info}", results)
    return results


if __name__ == "__main__":
    main()
