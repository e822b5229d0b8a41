"""Text that fits a narrow figure: titles and captions wrapped to ~320 px, margins that hold
them above the plot and the legend below the x-axis title, and map labels placed so that they
do not collide. Pure functions on plotly figures and pixel estimates; :mod:`.figures` uses them.

In JupyterLab at 1024 x 768 with the file browser open a view shows two figures side by side,
each ~300-450 px wide; the width is known only in the browser, so text is fitted to the
narrowest case with a conservative glyph width (0.6 x the font size; real text is ~0.5).

>>> with_caption(fig, "How to read it: ...")                       # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import re
import textwrap

import numpy as np
import plotly.graph_objects as go

FIT_WIDTH = 320        # the narrowest figure text must fit (px)
CHAR_WIDTH = 0.6       # estimated glyph width / font size
TITLE_SIZE, DETAIL_SIZE, CAPTION_SIZE, LEGEND_SIZE, AXIS_TITLE_SIZE = 14, 11, 11, 11, 12
TITLE_PAD = 8          # px from the container top to the title
LINE = 1.3             # plotly's line height / font size
TITLE_X = 8            # px from the container's left edge to the title and caption
CAPTION_CHARS = int((FIT_WIDTH - 2 * TITLE_X) / (CHAR_WIDTH * CAPTION_SIZE))  # 46
MULTILINE_SHIFT = 11   # plotly lifts a title of several lines by ~10 px (measured in Chromium)


def plain_text(text: str) -> str:
    """``text`` without plotly's HTML tags and entities (what a reader sees)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text or ""))


def text_width(text: str, size: float) -> float:
    """Conservative estimate of the rendered width (px) of one line of ``text``."""
    return len(plain_text(text)) * CHAR_WIDTH * size


def fit(text: str, size: float, width: float) -> str:
    """``text`` cut with an ellipsis so that it fits ``width`` px at ``size``."""
    chars = int(width / (CHAR_WIDTH * size))
    return text if len(text) <= chars else text[:max(chars - 1, 1)].rstrip() + "…"


def title_lines(fig: go.Figure) -> int:
    return 1 + (fig.layout.title.text or "").count("<br>")


def caption_lines(fig: go.Figure) -> int:
    text = fig.layout.title.subtitle.text
    return 0 if not text else 1 + text.count("<br>")


def legend_entries(fig: go.Figure) -> list[str]:
    """The names the legend shows (plotly draws a legend for two or more entries)."""
    if fig.layout.showlegend is False:
        return []
    names = [t.name for t in fig.data if t.showlegend is not False and t.name
             and t.type not in ("heatmap",)]
    return names if len(names) >= 2 or fig.layout.showlegend else []


def legend_rows(fig: go.Figure, width: float = FIT_WIDTH) -> int:
    """Rows of the horizontal legend at ``width`` px, the way plotly.js wraps it: one row when
    every entry fits the plot's width, else columns as wide as the widest entry."""
    entries = [45 + text_width(name, LEGEND_SIZE) for name in legend_entries(fig)]
    if not entries:
        return 0
    plot_w = width - (fig.layout.margin.l or 80) - (fig.layout.margin.r or 80)
    if sum(entries) <= plot_w:
        return 1
    columns = max(1, int(plot_w // max(entries)))
    return -(-len(entries) // columns)


def detail_lines(text: str) -> str:
    """``text`` as smaller grey title lines, wrapped (never cut) to fit a ~320 px figure."""
    chars = int((FIT_WIDTH - 2 * TITLE_X) / (CHAR_WIDTH * DETAIL_SIZE))
    return "<br>".join(f"<span style='font-size:{DETAIL_SIZE}px;color:#555'>{line}</span>"
                       for line in textwrap.wrap(text, chars))


def title_text(text: str, detail: str = "") -> str:
    """A short title, with its detail on smaller grey lines below it (wrapped, not cut: a
    number at the end of a line is often the one that matters)."""
    chars = int((FIT_WIDTH - 2 * TITLE_X) / (CHAR_WIDTH * TITLE_SIZE))
    text = "<br>".join(textwrap.wrap(text, chars)) or text
    return f"{text}<br>{detail_lines(detail)}" if detail else text


def with_caption(fig: go.Figure, text: str, width: int = CAPTION_CHARS) -> go.Figure:
    """Put a "how to read it" caption under the title (kept in every export), wrapped to fit a
    ~320 px figure, and make room for the title, the caption and the legend: the title is
    pinned to the container top, the plot starts below the caption, and the legend sits below
    the x-axis title."""
    lines = textwrap.wrap(text, min(width, CAPTION_CHARS)) if text else []
    fig.update_layout(title_subtitle_text="<br>".join(lines),
                      title_subtitle_font={"size": CAPTION_SIZE, "color": "#555"})
    return fit_layout(fig)


def fit_layout(fig: go.Figure) -> go.Figure:
    """Margins that hold the title + caption lines above the plot and the legend below the
    x-axis title (see :data:`FIT_WIDTH`)."""
    pad = TITLE_PAD + (MULTILINE_SHIFT if title_lines(fig) > 1 else 0)
    top = pad + LINE * TITLE_SIZE * title_lines(fig) + LINE * CAPTION_SIZE * caption_lines(fig) + 14
    fig.update_layout(title={"y": 1, "yref": "container", "yanchor": "top", "x": 0,
                             "xref": "container", "xanchor": "left",
                             "pad": {"t": pad, "l": TITLE_X}})
    extra = LINE * CAPTION_SIZE * max(0, caption_lines(fig) - 3)  # long captions grow the
    if extra and fig.layout.height:                                 # figure, not shrink it
        fig.update_layout(height=math.ceil(fig.layout.height + extra))
    rows = legend_rows(fig)
    bottom = fig.layout.margin.b or 45
    if rows:  # at the container bottom, below the x-axis title: rows grow the figure
        bottom = max(bottom, 52) + 20 * rows
        if fig.layout.height and rows > 1:
            fig.update_layout(height=fig.layout.height + 20 * (rows - 1))
        fig.update_layout(legend={"orientation": "h", "yref": "container", "y": 0,
                                  "yanchor": "bottom", "x": 0, "xanchor": "left",
                                  "font": {"size": LEGEND_SIZE}})
    fig.update_layout(margin_t=math.ceil(top), margin_b=math.ceil(bottom))
    return fig


# -- labels on a 2-D map ------------------------------------------------------------------------

LABEL_SIZE = 11


def short_labels(items) -> list[str]:
    """Item labels for a map: the first three letters when every item is longer than five
    characters and those stay distinct ("Jan", "Feb", ...), else the items."""
    items = [str(i) for i in items]
    short = [i[:3] for i in items]
    long = items and max(map(len, items)) > 5
    return short if long and len(set(short)) == len(items) else items


def label_box(x: float, y: float, text: str, size: float = LABEL_SIZE) -> tuple:
    """Estimated pixel box (left, top, right, bottom) of a label centred at (x, y)."""
    w, h = text_width(text, size) + 4, LINE * size + 2
    return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)


def boxes_overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(points: np.ndarray, labels, obstacles=(), bounds=None,
                 size: float = LABEL_SIZE) -> list[tuple[float, float]]:
    """Pixel offsets (dx, dy; y down) for labels of ``points`` (pixel positions, y down) so
    that no two labels collide: each label goes radially outward from the points' centroid,
    and when that spot is taken a greedy search turns and moves it further out. ``obstacles``
    are boxes to avoid (the markers); ``bounds`` is the (left, top, right, bottom) box labels
    must stay in."""
    points = np.asarray(points, dtype=float)
    centre = points.mean(0)
    taken = list(obstacles)
    offsets = []
    turns = [0, 30, -30, 60, -60, 90, -90, 120, -120, 150, -150, 180]
    for p, text in zip(points, labels):
        away = p - centre
        base = math.degrees(math.atan2(away[1], away[0])) if np.hypot(*away) > 1e-9 else -90
        w, h = text_width(text, size) + 4, LINE * size + 2
        best, best_cost = None, math.inf
        for distance in (9, 18, 30, 44, 60, 80, 104):
            for turn in turns:
                a = math.radians(base + turn)
                u = np.array([math.cos(a), math.sin(a)])
                reach = distance + abs(u[0]) * w / 2 + abs(u[1]) * h / 2
                centre_xy = p + u * reach
                box = label_box(*centre_xy, text, size)
                cost = sum(boxes_overlap(box, t) for t in taken)
                if bounds is not None and not (bounds[0] <= box[0] and box[2] <= bounds[2]
                                               and bounds[1] <= box[1] and box[3] <= bounds[3]):
                    cost += 0.5
                cost += distance / 1000 + abs(turn) / 100000
                if cost < best_cost:
                    best, best_cost = (centre_xy - p, box), cost
            if best_cost < 1:
                break
        offsets.append(tuple(float(v) for v in best[0]))
        taken.append(best[1])
    return offsets


def map_frame(xy: np.ndarray, width: float, height: float, margin: dict) -> dict:
    """Axis ranges of a square-unit map and the data -> pixel scale at ``width`` x ``height``
    (plotly widens one range to keep one unit the same length on both axes)."""
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - 0.12 * span, hi + 0.12 * span
    plot_w = width - margin["l"] - margin["r"]
    plot_h = height - margin["t"] - margin["b"]
    scale = min(plot_w / (hi[0] - lo[0]), plot_h / (hi[1] - lo[1]))
    mid = (lo + hi) / 2
    return {"x": [float(lo[0]), float(hi[0])], "y": [float(lo[1]), float(hi[1])],
            "scale": scale, "mid": mid, "plot": (margin["l"], margin["t"], plot_w, plot_h)}


def to_pixels(xy: np.ndarray, frame: dict) -> np.ndarray:
    """Data coordinates -> pixels (y down) in a figure laid out by :func:`map_frame`."""
    left, top, plot_w, plot_h = frame["plot"]
    cx, cy = left + plot_w / 2, top + plot_h / 2
    xy = np.asarray(xy, dtype=float)
    return np.stack([cx + (xy[:, 0] - frame["mid"][0]) * frame["scale"],
                     cy - (xy[:, 1] - frame["mid"][1]) * frame["scale"]], 1)
