"""The timeline's polls/errors chart: a source's polls per column over the range, answered
ones grey, failed ones stacked red on top, each column's numbers in its tooltip.

The columns are read from the stored 5-minute buckets (bridge.store.poll_buckets): 72 of
them span the range, so a column is one bucket over 6 h, four over 24 h, 28 over 7 days.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from html import escape

from bridge.store.poll_buckets import PollBucket

COLUMNS = 72
HEIGHT = 30
OK_COLOUR, ERROR_COLOUR = "#cbd5e1", "#dc2626"


@dataclass(slots=True)
class Column:
    start: datetime
    ok: int = 0
    errors: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class PollTotals:
    polls: int
    errors: int


def columns(buckets: Sequence[PollBucket], since: datetime, span: timedelta
            ) -> list[Column]:
    """The buckets summed into `COLUMNS` equal columns from `since` (oldest first)."""
    width = span / COLUMNS
    out = [Column(since + i * width) for i in range(COLUMNS)]
    for bucket in buckets:
        index = math.floor((bucket.start - since) / width)  # a bucket begun before: -1
        if 0 <= index < COLUMNS:
            column = out[index]
            column.ok += bucket.ok
            column.errors += bucket.errors
            column.last_error = bucket.last_error or column.last_error
    return out


def totals(cols: Sequence[Column]) -> PollTotals:
    return PollTotals(polls=sum(c.ok + c.errors for c in cols),
                      errors=sum(c.errors for c in cols))


def chart(cols: Sequence[Column], *, left: float, width: float, top: float,
          zone: tzinfo) -> str:
    """The chart's SVG elements, `HEIGHT` px high from `top`, over [left, left + width]."""
    most = max([c.ok + c.errors for c in cols] + [1])
    step = width / len(cols)
    count = totals(cols)
    parts = [f'<text x="0" y="{top + HEIGHT - 8:.0f}" class="tl-label">polls / errors</text>',
             f'<text x="0" y="{top + HEIGHT + 4:.0f}" class="tl-axis">{count.polls} '
             f'poll{"s" if count.polls != 1 else ""}, {count.errors} failed</text>']
    for i, col in enumerate(cols):
        if not col.ok + col.errors:
            continue
        x = left + i * step
        end = col.start + (cols[1].start - cols[0].start if len(cols) > 1 else timedelta())
        tip = (f"{col.start.astimezone(zone):%a %H:%M}–{end.astimezone(zone):%H:%M}: "
               f"{col.ok + col.errors} polls, {col.errors} failed")
        if col.last_error:
            tip += f" (last error: {col.last_error})"
        parts.append(f'<g class="tl-poll-col"><title>{escape(tip)}</title>')
        for n, colour, below, kind in ((col.ok, OK_COLOUR, 0, "ok"),
                                       (col.errors, ERROR_COLOUR, col.ok, "error")):
            if n:
                y = top + HEIGHT - HEIGHT * (below + n) / most
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
                             f'height="{HEIGHT * n / most:.1f}" fill="{colour}" '
                             f'class="tl-poll" data-kind="{kind}" data-count="{n}"/>')
        parts.append("</g>")
    return "".join(parts)
