"""CSV export shared by every view: rows of dicts, cells safe to open in a spreadsheet.

>>> safe_cell("=HYPERLINK(\\"http://x\\")")
'\\'=HYPERLINK("http://x")'
>>> safe_cell(-0.5), safe_cell("-0.5"), safe_cell("plain")
(-0.5, "'-0.5", 'plain')
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A text cell that a spreadsheet would run as a formula gets a leading ``'``; numbers and
    other text are kept as they are (OWASP CSV-injection advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Write ``rows`` (dicts; the union of their keys is the header) as UTF-8 CSV."""
    path = Path(path)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[safe_cell(k) for k in fields])
        writer.writeheader()
        writer.writerows({safe_cell(k): safe_cell(v) for k, v in row.items()} for row in rows)
    return path


__all__ = ["safe_cell", "write_csv"]
