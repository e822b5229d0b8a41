"""Argument checks shared by the kernel: each bad value gets a message saying what to pass.

Numpy integers and floats are accepted wherever Python ones are (``seed=np.int64(3)``).

>>> as_int(np.int64(3), "seed", minimum=0)
3
>>> as_float("0.5", "alpha")
Traceback (most recent call last):
...
TypeError: alpha must be a number such as 0.5, got str '0.5'
"""

from __future__ import annotations

import math
import numbers

import numpy as np  # noqa: F401  (used by the doctest)


def as_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, refusing bools, floats (``2.5``, ``1.0``), None and strings."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        example = minimum if minimum is not None else 1
        raise TypeError(f"{name} must be a whole number such as {max(example, 1)}, got "
                        f"{type(value).__name__} {value!r:.40}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def as_seed(value, name: str = "seed") -> int:
    """A random seed: a whole number from 0 to 2**63 - 1 (numpy integers accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 0 <= int(value) < 2**63:
        raise ValueError(f"{name} must be an integer from 0 to 2**63 - 1 such as 0, got "
                         f"{value!r:.40}")
    return int(value)


def as_float(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
             finite: bool = True, example: float = 0.5) -> float:
    """``value`` as a finite real float (or within bounds), with a message naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number such as {example}, got "
                        f"{type(value).__name__} {value!r:.40}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be finite: pass a number such as {example}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value:g}")
    return value


def as_name(value, what: str = "a direction") -> str:
    """``value`` if it is a string with something besides spaces in it (returned unchanged);
    None and blank strings are a ValueError, other types a TypeError, each naming ``what``.

    >>> as_name("sentiment@10")
    'sentiment@10'
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{what} needs a non-empty name such as 'sentiment@10', got "
                         f"{value!r}")
    if not isinstance(value, str):
        raise TypeError(f"{what} needs a non-empty name such as 'sentiment@10' (text), got "
                        f"{type(value).__name__} {value!r:.40}")
    return value


__all__ = ["as_float", "as_int", "as_name", "as_seed"]
