"""The dashboard's timeline: per source, each job's runs as bars over the last hours (state
colours, failures marked), and a small chart of polls and errors. Server-rendered SVG: no
script, no build step; the page embeds it as markup (every text in it is escaped here).

The bars come from the stored events (each transition starts a bar in its `to` state, the
next one ends it); the poll chart from the running bridge's poll history (`Runtime`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

from bridge.model import Event

HOURS = 6
EVENTS_PER_SOURCE = 500
MAX_JOBS = 12
WIDTH, LABEL, ROW = 720, 180, 16
BUCKETS = 36
COLOURS = {"pending": "#9aa5b1", "running": "#3b82f6", "succeeded": "#16a34a",
           "failed": "#dc2626", "cancelled": "#a16207", "blocked": "#7c3aed",
           "unknown": "#6b7280"}


@dataclass(frozen=True, slots=True)
class Bar:
    start: datetime
    end: datetime
    state: str


@dataclass(slots=True)
class JobLine:
    label: str
    bars: list[Bar]


def job_lines(events: Iterable[Event], now: datetime, hours: int = HOURS
              ) -> dict[str, dict[str, JobLine]]:
    """Per source, per job: its state over time as bars, from events oldest first."""
    since = now - timedelta(hours=hours)
    out: dict[str, dict[str, JobLine]] = {}
    for event in sorted(events, key=lambda e: e.at):
        job = event.job
        if job is None:
            continue
        lines = out.setdefault(event.source, {})
        line = lines.get(job.id)
        if line is None:
            line = lines[job.id] = JobLine(label=job.name or job.id, bars=[])
        elif job.name:
            line.label = job.name
        state = str(job.state)
        if line.bars and line.bars[-1].state == state:
            continue
        if line.bars:
            last = line.bars[-1]
            line.bars[-1] = Bar(last.start, event.at, last.state)
        line.bars.append(Bar(event.at, now, state))
    for lines in out.values():
        for line in lines.values():
            line.bars = [Bar(max(b.start, since), b.end, b.state) for b in line.bars
                         if b.end > since]
    return out


def _x(at: datetime, now: datetime, hours: int) -> float:
    span = hours * 3600
    offset = span - (now - at).total_seconds()
    return LABEL + max(0.0, min(1.0, offset / span)) * (WIDTH - LABEL)


def source_svg(source: str, lines: Mapping[str, JobLine], polls: Sequence[tuple[datetime, bool]],
               now: datetime, hours: int = HOURS) -> Markup:
    """One source's timeline: a row per job (most recently active first), then its polls."""
    shown = sorted(lines.values(), key=lambda line: line.bars[-1].start if line.bars else now,
                   reverse=True)[:MAX_JOBS]
    shown = [line for line in shown if line.bars]
    height = ROW * len(shown) + 64
    parts = [f'<svg class="timeline" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}" data-source="{escape(source)}">',
             f'<title>{escape(source)}: job runs and polls over the last {hours} h</title>']
    for row, line in enumerate(shown):
        y = row * ROW
        parts.append(f'<text x="0" y="{y + 12}" class="tl-label">{escape(line.label[:28])}</text>')
        for bar in line.bars:
            x1 = _x(bar.end, now, hours)
            # A run of seconds is still drawn: at least 2 px, inside the chart.
            x0 = min(_x(bar.start, now, hours), WIDTH - 2.0)
            colour = COLOURS.get(bar.state, COLOURS["unknown"])
            parts.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 2.0):.1f}" '
                         f'height="{ROW - 4}" fill="{colour}" data-state="{escape(bar.state)}">'
                         f'<title>{escape(line.label)}: {escape(bar.state)} from '
                         f'{bar.start:%H:%M} to {bar.end:%H:%M}</title></rect>')
            if bar.state == "failed":
                parts.append(f'<path class="tl-failure" d="M{x0:.1f} {y} l6 0 l-6 9 z" '
                             'fill="#7f1d1d"/>')
    parts.append(_polls_chart(polls, now, hours, ROW * len(shown) + 8))
    for h in range(hours + 1):
        x = LABEL + h * (WIDTH - LABEL) / hours
        label = (now - timedelta(hours=hours - h)).strftime("%H:%M")
        anchor = "end" if h == hours else "middle"
        parts.append(f'<text x="{x:.1f}" y="{height - 2}" class="tl-axis" '
                     f'text-anchor="{anchor}">{label}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _polls_chart(polls: Sequence[tuple[datetime, bool]], now: datetime, hours: int,
                 top: int) -> str:
    """Polls per time bucket as grey columns, failed ones stacked red on top."""
    size = hours * 3600 / BUCKETS
    ok, bad = [0] * BUCKETS, [0] * BUCKETS
    for at, succeeded in polls:
        age = (now - at).total_seconds()
        if 0 <= age < hours * 3600:
            index = BUCKETS - 1 - int(age // size)
            (ok if succeeded else bad)[index] += 1
    most = max([a + b for a, b in zip(ok, bad, strict=True)] + [1])
    width = (WIDTH - LABEL) / BUCKETS
    parts = [f'<text x="0" y="{top + 24}" class="tl-label">polls / errors</text>']
    for i in range(BUCKETS):
        x = LABEL + i * width
        for count, colour, base in ((ok[i], "#cbd5e1", 0), (bad[i], "#dc2626", ok[i])):
            if count:
                h = 30 * count / most
                y = top + 32 - 30 * (base + count) / most
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width - 1:.1f}" '
                             f'height="{h:.1f}" fill="{colour}" class="tl-poll"/>')
    total_bad = sum(bad)
    parts.append(f'<text x="{WIDTH}" y="{top + 8}" text-anchor="end" class="tl-axis">'
                 f'{sum(ok) + total_bad} polls, {total_bad} failed</text>')
    return "".join(parts)


def legend() -> Markup:
    """The state colours, as the bars use them, and the failure mark."""
    # Inline in HTML: no xmlns needed (and the page links nothing outside itself).
    parts = ['<svg class="timeline-legend" viewBox="0 0 720 16" width="720" height="16">']
    for n, (state, colour) in enumerate(COLOURS.items()):
        x = n * 92
        parts.append(f'<rect x="{x}" y="3" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="12" class="tl-axis">{escape(state)}</text>')
    parts.append('<path d="M660 3 l6 0 l-6 9 z" fill="#7f1d1d"/>'
                 '<text x="670" y="12" class="tl-axis">failure</text></svg>')
    return Markup("".join(parts))
