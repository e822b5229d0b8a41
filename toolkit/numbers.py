"""Numbers for people: the one formatter that kernel summaries, status lines and figures share.

The kernel owns it (``reprlab.numbers``) so that results can phrase their own summaries;
``reprlab.widgets.figures`` re-exports :func:`fmt` for the views.

- :func:`fmt`: ``digits`` significant digits, no float noise ("0.16", "-24", "0.000123").
- :func:`fmt_score`: a bounded score (accuracy, R², Spearman ρ, cosine) with two decimals, so
  scores side by side line up ("1.00", "0.60", "0.53"), never "1" next to "0.6".
- :func:`fmt_signed`: a change or difference with its sign ("+0.12", "−0.5" uses "-").
- :func:`fmt_p`: a p-value, honest about the smallest value a permutation test can give.
"""

from __future__ import annotations

import math

#: p-values below this are written "p < 0.001" (more digits would claim false precision).
P_SMALLEST_SHOWN = 0.001


def _missing(x) -> str | None:
    """How a number that is not there reads: "" for None, "n/a" for NaN (None otherwise)."""
    if x is None:
        return ""
    return "n/a" if math.isnan(float(x)) else None


def fmt(x, digits: int = 3) -> str:
    """A number for people: ``digits`` significant digits, no float noise.

    >>> fmt(0.1599999964237213), fmt(-24.0), fmt(1234.5), fmt(0.000123)
    ('0.16', '-24', '1.23e+03', '0.000123')
    """
    if (missing := _missing(x)) is not None:
        return missing
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    text = f"{x:.{digits}g}"
    return "0" if text in ("-0", "0") else text


def fmt_score(x, decimals: int = 2) -> str:
    """A score on a bounded scale (accuracy, R², ρ, cosine): fixed ``decimals``.

    >>> fmt_score(1.0), fmt_score(0.6), fmt_score(0.5349), fmt_score(-0.0001)
    ('1.00', '0.60', '0.53', '0.00')
    """
    if (missing := _missing(x)) is not None:
        return missing
    text = f"{float(x):.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_signed(x, decimals: int = 2) -> str:
    """A difference with its sign and fixed ``decimals`` ("+0.12", "-0.50", "0.00").

    >>> fmt_signed(0.123), fmt_signed(-0.5), fmt_signed(0.0)
    ('+0.12', '-0.50', '0.00')
    """
    text = fmt_score(x, decimals)
    if text in ("", "n/a") or text.startswith("-") or float(text) == 0:
        return text
    return "+" + text


def fmt_p(p, floor: float | None = None) -> str:
    """A p-value as people read it, starting with "p".

    ``floor`` is the smallest p the test can give (1 / (permutations + 1), or larger when
    orders tie): at the floor the p-value is only a bound, so it reads "p ≤ floor".
    Otherwise two significant digits, and "p < 0.001" below that.

    >>> fmt_p(0.0030), fmt_p(0.04512), fmt_p(0.0002), fmt_p(0.0099, floor=1 / 101)
    ('p = 0.003', 'p = 0.045', 'p < 0.001', 'p ≤ 0.0099')
    """
    if p is None:
        return "p n/a"
    p = float(p)
    if math.isnan(p):
        return "p n/a"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"p ≤ {fmt(floor, 2)}"
    if p < P_SMALLEST_SHOWN:
        return f"p < {fmt(P_SMALLEST_SHOWN)}"
    return f"p = {fmt(p, 2)}"
