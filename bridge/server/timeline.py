"""The dashboard's timeline: per source, each job's runs as bars over a range (6 h, 24 h or
7 days), coloured by state, failed, cancelled, stalled and vanished runs marked, and under
them a chart of the source's polls and errors. Server-rendered SVG: no script, no build
step; the page embeds it as markup (every text in it is escaped here), and a table of the
same runs beside it for screen readers and copying.

Runs come from the stored events (bridge.server.timeline_runs), the poll chart from the
stored poll buckets (bridge.server.timeline_polls). Times are shown in `[bridge] timezone`;
its night hours (22:00-06:00) are shaded, so a sync that fails at night stands out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from html import escape
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup

from bridge.model import Event
from bridge.server import timeline_polls
from bridge.server.humanize import human_duration
from bridge.server.timeline_runs import MARKS, JobRow, Mark, Run, job_rows
from bridge.store.poll_buckets import PollBucket

# The ranges offered (`?range=`), each with its axis: a tick every `step`, labelled so.
RANGES: dict[str, tuple[timedelta, timedelta, str]] = {
    "6h": (timedelta(hours=6), timedelta(hours=1), "%H:%M"),
    "24h": (timedelta(hours=24), timedelta(hours=3), "%H:%M"),
    "7d": (timedelta(days=7), timedelta(days=1), "%a %d"),
}
DEFAULT_RANGE = "6h"
# Events read per source for one render: bounds the work of a busy source over 7 days.
EVENTS_PER_SOURCE = 3000
MAX_ROWS = 12
TABLE_RUNS = 200
NIGHT = (time(22), time(6))
WIDTH, LABEL, ROW = 960, 200, 18
PLOT = WIDTH - LABEL
COLOURS = {"pending": "#9aa5b1", "running": "#3b82f6", "succeeded": "#16a34a",
           "failed": "#dc2626", "cancelled": "#a16207", "blocked": "#7c3aed",
           "unknown": "#6b7280"}
# Each mark's shape (a path from the mark's x at the row's top) and colour.
_MARK_SHAPES = {"failed": ("l7 0 l-7 10 z", "#7f1d1d"), "cancelled": ("l7 0 l-7 10 z", "#713f12"),
                "stalled": ("m0 1 l4 4 l-4 4 l-4 -4 z", "#d97706"),
                "vanished": ("m-3 1 l6 6 m0 -6 l-6 6", "#111827")}
_OPEN = ' data-open="1"'


def range_key(value: str | None) -> str:
    """The `?range=` value if it is one of RANGES, else the default."""
    return value if value in RANGES else DEFAULT_RANGE


def zone_of(name: str) -> tzinfo:
    """`[bridge] timezone` (checked by `bridge check`); UTC if this system lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceTimeline:
    """One source's card section: the SVG, and the runs again as table rows."""

    source: str
    svg: Markup
    rows: Sequence[JobRow]
    shown: int
    polls: timeline_polls.PollTotals
    table: Sequence[dict[str, str]]

    @property
    def hidden(self) -> int:
        return len(self.rows) - self.shown

    @property
    def flagged(self) -> int:
        return sum(row.flagged_runs for row in self.rows)


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where a time is drawn: the range [since, now] over the plot's width."""

    since: datetime
    now: datetime
    zone: tzinfo

    def x(self, at: datetime) -> float:
        span = (self.now - self.since).total_seconds()
        offset = (at - self.since).total_seconds() / span
        return LABEL + max(0.0, min(1.0, offset)) * PLOT

    def clock(self, at: datetime, fmt: str = "%a %H:%M") -> str:
        return at.astimezone(self.zone).strftime(fmt)


def source_timeline(source: str, events: Iterable[Event], buckets: Sequence[PollBucket], *,
                    key: str, now: datetime, zone: tzinfo) -> SourceTimeline | None:
    """The timeline of one source over the range `key`; None with neither runs nor polls."""
    span = RANGES[key][0]
    frame = _Frame(now - span, now, zone)
    rows = job_rows(events, frame.since, now)
    cols = timeline_polls.columns(buckets, frame.since, span)
    counted = timeline_polls.totals(cols)
    if not rows and not counted.polls:
        return None
    shown = rows[:MAX_ROWS]
    svg = _svg(source, key, frame, rows, shown, cols, counted)
    return SourceTimeline(source=source, svg=svg, rows=rows, shown=len(shown),
                          polls=counted, table=_table(rows, frame))


def _svg(source: str, key: str, frame: _Frame, rows: Sequence[JobRow],
         shown: Sequence[JobRow], cols: Sequence[timeline_polls.Column],
         counted: timeline_polls.PollTotals) -> Markup:
    hidden = rows[len(shown):]
    extra = ROW if hidden else 0
    chart_top = ROW * len(shown) + extra + 8
    plot_bottom = chart_top + timeline_polls.HEIGHT + 8
    height = plot_bottom + 16
    flagged = sum(row.flagged_runs for row in rows)
    title = f"{source}: job runs and polls over the last {key}"
    desc = (f"{len(rows)} job{'s' if len(rows) != 1 else ''}, {flagged} flagged run"
            f"{'s' if flagged != 1 else ''} (failed, cancelled, stalled or vanished); "
            f"{counted.polls} polls, {counted.errors} failed. The table below lists the runs.")
    ident = "tl-" + re.sub(r"[^A-Za-z0-9_-]", "-", source)
    parts = [f'<svg class="timeline" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}" data-source="{escape(source)}" '
             f'data-range="{key}" aria-labelledby="{ident}-t {ident}-d">',
             f'<title id="{ident}-t">{escape(title)}</title>',
             f'<desc id="{ident}-d">{escape(desc)}</desc>']
    parts.extend(_nights(frame, plot_bottom))
    parts.extend(_ticks(frame, key, plot_bottom, height))
    for index, row in enumerate(shown):
        parts.extend(_row(row, index * ROW, frame))
    if hidden:
        more_flagged = sum(row.flagged_runs for row in hidden)
        note = f" ({more_flagged} flagged runs)" if more_flagged else ""
        parts.append(f'<text x="0" y="{len(shown) * ROW + 13}" class="tl-more">and '
                     f'{len(hidden)} more job{"s" if len(hidden) != 1 else ""}{note}: '
                     'see the table</text>')
    parts.append(timeline_polls.chart(cols, left=LABEL, width=PLOT, top=chart_top,
                                      zone=frame.zone))
    parts.append("</svg>")
    return Markup("".join(parts))


def _row(row: JobRow, y: int, frame: _Frame) -> list[str]:
    label = row.label if len(row.label) <= 30 else row.label[:29] + "…"
    parts = [f'<g class="tl-row" data-job="{escape(row.job_id)}">',
             f'<g><title>{escape(row.label)} ({escape(row.job_id)})</title>'
             f'<text x="0" y="{y + 13}" class="tl-label">{escape(label)}</text></g>']
    for run in row.runs:
        x0 = min(frame.x(max(run.start, frame.since)), WIDTH - 2.0)
        # A run of seconds is still drawn: at least 2 px, inside the chart.
        width = max(frame.x(run.end or frame.now) - x0, 2.0)
        colour = COLOURS.get(run.state, COLOURS["unknown"])
        parts.append(f'<rect class="tl-run" x="{x0:.1f}" y="{y + 3}" width="{width:.1f}" '
                     f'height="{ROW - 6}" rx="2" fill="{colour}" '
                     f'data-state="{escape(run.state)}" data-run="{run.number}"'
                     f'{_OPEN if run.end is None else ""}>'
                     f'<title>{escape(_run_tip(row, run, frame))}</title></rect>')
        for mark in run.marks:
            parts.append(_mark(row, mark, y, frame))
    parts.append("</g>")
    return parts


def _run_tip(row: JobRow, run: Run, frame: _Frame) -> str:
    text = (f"{row.label} · run {run.number}: {run.state} · {_started(run, frame)} · "
            f"{'at least ' if not run.start_seen else ''}"
            f"{human_duration(run.duration(frame.now))}")
    if run.end is None:
        text += " so far"
    if run.message:
        text += f" · {run.message}"
    return text


def _started(run: Run, frame: _Frame) -> str:
    return f"started {'by ' if not run.start_seen else ''}{frame.clock(run.start)}"


def _mark(row: JobRow, mark: Mark, y: int, frame: _Frame) -> str:
    shape, colour = _MARK_SHAPES[mark.kind]
    x = min(frame.x(mark.at), WIDTH - 7.0)
    tip = f"{row.label}: {MARKS[mark.kind]} at {frame.clock(mark.at)}"
    if mark.reason:
        tip += f" · {mark.reason}"
    paint = f'stroke="{colour}" stroke-width="2" fill="none"' if mark.kind == "vanished" \
        else f'fill="{colour}"'
    return (f'<path class="tl-mark" data-mark="{mark.kind}" d="M{x:.1f} {y} {shape}" {paint}>'
            f'<title>{escape(tip)}</title></path>')


def _ticks(frame: _Frame, key: str, bottom: float, height: float) -> list[str]:
    """The hours axis: a faint line and a label at each tick, in the configured zone."""
    _, step, fmt = RANGES[key]
    parts = []
    for at in _tick_times(frame, step):
        x = frame.x(at)
        parts.append(f'<line class="tl-tick" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{bottom}"/>'
                     f'<text x="{x:.1f}" y="{height - 3}" class="tl-axis" '
                     f'text-anchor="middle">{frame.clock(at, fmt)}</text>')
    zone = frame.clock(frame.now, "%Z") or str(frame.zone)
    parts.append(f'<text x="0" y="{height - 3}" class="tl-axis">{escape(zone)}</text>')
    return parts


def _tick_times(frame: _Frame, step: timedelta) -> list[datetime]:
    """Whole local hours (or midnights, for a step of a day) a multiple of `step` apart."""
    hours = int(step.total_seconds() // 3600)
    # Quarter hours in UTC meet every zone's whole hours (offsets are multiples of 15 min).
    at = frame.since.replace(minute=0, second=0, microsecond=0)
    out = []
    while at <= frame.now:
        local = at.astimezone(frame.zone)
        if at >= frame.since and local.minute == 0 and local.hour % min(hours, 24) == 0:
            out.append(at)
        at += timedelta(minutes=15)
    return out


def _nights(frame: _Frame, bottom: float) -> list[str]:
    """A shaded band for each local night (22:00-06:00) overlapping the range."""
    parts = []
    day = frame.since.astimezone(frame.zone).date() - timedelta(days=1)
    while day <= frame.now.astimezone(frame.zone).date():
        start = datetime.combine(day, NIGHT[0], frame.zone)
        end = datetime.combine(day + timedelta(days=1), NIGHT[1], frame.zone)
        if end > frame.since and start < frame.now:
            x0, x1 = frame.x(start), frame.x(end)
            parts.append(f'<rect class="tl-night" x="{x0:.1f}" y="0" width="{x1 - x0:.1f}" '
                         f'height="{bottom}"><title>night (22:00–06:00)</title></rect>')
        day += timedelta(days=1)
    return parts


def _table(rows: Sequence[JobRow], frame: _Frame) -> list[dict[str, str]]:
    """The runs as table rows, newest first (at most TABLE_RUNS)."""
    runs = sorted(((row, run) for row in rows for run in row.runs),
                  key=lambda pair: pair[1].start, reverse=True)[:TABLE_RUNS]
    return [{"job": row.label, "job_id": row.job_id, "run": str(run.number),
             "state": run.state,
             "start": ("by " if not run.start_seen else "") + frame.clock(run.start),
             "duration": human_duration(run.duration(frame.now))
             + (" so far" if run.end is None else ""),
             "marks": ", ".join(MARKS[m.kind] for m in run.marks),
             "message": run.message or ""}
            for row, run in runs]


def legend() -> Markup:
    """The state colours, as the bars use them, the marks and the night shading."""
    # Inline in HTML: no xmlns needed (and the page links nothing outside itself).
    parts = ['<svg class="timeline-legend" role="img" aria-label="Legend: bar colours are '
             'job states; marks flag failed, cancelled, stalled and vanished runs" '
             f'viewBox="0 0 {WIDTH} 34" width="{WIDTH}" height="34">']
    for n, (state, colour) in enumerate(COLOURS.items()):
        x = n * 100
        parts.append(f'<rect x="{x}" y="3" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="12" class="tl-axis">{escape(state)}</text>')
    for n, kind in enumerate(MARKS):
        x = n * 140
        shape, colour = _MARK_SHAPES[kind]
        paint = (f'stroke="{colour}" stroke-width="2" fill="none"' if kind == "vanished"
                 else f'fill="{colour}"')
        parts.append(f'<path d="M{x + 3} 20 {shape}" {paint}/>'
                     f'<text x="{x + 14}" y="30" class="tl-axis">{escape(kind)}</text>')
    parts.append('<rect class="tl-night" x="560" y="20" width="10" height="10"/>'
                 '<text x="574" y="30" class="tl-axis">night (22:00–06:00)</text></svg>')
    return Markup("".join(parts))


def range_links(key: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    """The range choices as links that keep the page's other filters."""
    links = []
    for choice in RANGES:
        params = {k: v for k, v in query.items() if v and k != "range"}
        if choice != DEFAULT_RANGE:
            params["range"] = choice
        text = urlencode(params)
        links.append({"key": choice, "href": "/" + (f"?{text}" if text else "") + "#timeline",
                      "current": choice == key})
    return links
