"""The timeline's data: each job's runs over a time range, read from its stored events.

A run is what a job does from its start to its end: it starts with the first event of a run
number (`job.run`; detection counts a recurring job's runs, JTL syncs going from a terminal
state back to running) and ends at the event into a terminal state, or when the job
vanished; a run not ended yet is open (drawn up to now). Its state is the last one seen,
its marks what an on-call person looks for: failed, cancelled, stalled, vanished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bridge.model import Event, EventKind, JobState

# What a mark means; the keys are the mark kinds, as the SVG's data-mark and the table say.
MARKS = {"failed": "failed", "cancelled": "cancelled", "stalled": "stalled (no progress)",
         "vanished": "vanished from the API"}
_TERMINAL_MARKS = {JobState.FAILED: "failed", JobState.CANCELLED: "cancelled"}


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str
    at: datetime
    reason: str | None = None


@dataclass(slots=True, kw_only=True)
class Run:
    number: int
    start: datetime
    # None: not ended yet (the run goes on, or the job's end was not seen).
    end: datetime | None
    state: str
    message: str | None = None
    marks: list[Mark] = field(default_factory=list)
    # False: the run's first event read was not its start (older events were pruned, or
    # not read): it began at `start` or before.
    start_seen: bool = True

    def duration(self, now: datetime) -> float:
        return ((self.end or now) - self.start).total_seconds()

    @property
    def flagged(self) -> bool:
        """Whether the run needs a look (failed, cancelled, stalled or vanished)."""
        return bool(self.marks)


@dataclass(slots=True, kw_only=True)
class JobRow:
    job_id: str
    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def flagged_runs(self) -> int:
        return sum(1 for run in self.runs if run.flagged)

    @property
    def last_active(self) -> datetime:
        last = self.runs[-1]
        marks = [m.at for m in last.marks]
        return max([last.start, *([last.end] if last.end else []), *marks])


def job_rows(events: Iterable[Event], since: datetime, now: datetime) -> list[JobRow]:
    """One source's jobs with their runs that overlap [since, now]: the jobs with the most
    flagged runs first, then the most recently active; runs oldest first."""
    rows: dict[str, JobRow] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.job is not None and event.repeat_of is None:
            _apply(rows, event)
    shown = []
    for row in rows.values():
        row.runs = [run for run in row.runs
                    if (run.end or now) >= since and run.start <= now]
        if row.runs:
            shown.append(row)
    shown.sort(key=lambda row: (row.flagged_runs, row.last_active), reverse=True)
    return shown


def _apply(rows: dict[str, JobRow], event: Event) -> None:
    job = event.job
    assert job is not None
    row = rows.get(job.id)
    if row is None:
        row = rows[job.id] = JobRow(job_id=job.id, label=job.name or job.id)
    elif job.name:
        row.label = job.name
    run = row.runs[-1] if row.runs else None
    state = JobState(job.state)
    if run is None or job.run != run.number or (run.end is not None and
                                                event.on == EventKind.APPEARED):
        if run is not None and run.end is None:
            run.end = event.at  # a new run began: the old one is over (its end unseen)
        start = event.at
        # A run starts with the job's first sighting, or with the event that began a new
        # run after one this row has; anything else is its middle.
        seen = event.on == EventKind.APPEARED or run is not None
        # First seen already finished (its start is older than the events kept, or it ran
        # between two polls): detection says how long it ran.
        if state.terminal and event.duration is not None:
            start, seen = event.at - event.duration, True
        run = Run(number=job.run, start=start, end=None, state=str(state), start_seen=seen)
        row.runs.append(run)
    run.state = str(state)
    run.message = job.message or run.message
    if event.on == EventKind.STALLED:
        run.marks.append(Mark("stalled", event.at, event.reason))
    elif event.on == EventKind.VANISHED:
        run.marks.append(Mark("vanished", event.at, event.reason))
        run.end = run.end or event.at
    if state.terminal and run.end is None:
        run.end = event.at
        kind = _TERMINAL_MARKS.get(state)
        if kind is not None:
            run.marks.append(Mark(kind, event.at, job.message))
