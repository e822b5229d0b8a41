"""Timing and printing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def shown(value: object) -> str:
    """A figure as text: 3 decimals, or 2 significant digits when it is tiny (a max |diff|)."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.1e}" if 0 < abs(value) < 1e-2 else f"{value:.3f}"


def report(title: str, results: dict) -> None:
    """Print one benchmark's figures as an aligned table."""
    print(f"# {title}")
    for key, value in results.items():
        print(f"{key:45s} {shown(value):>10}")
