"""Sample events for `bridge check`, and events from data for `bridge test` / `bridge render`.

Both use one fixed clock, so what the commands print never depends on today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from bridge.config.schema import Config, Rule
from bridge.groups.keys import group_key
from bridge.groups.model import GroupedEvent, OpenGroup, group_id
from bridge.model import Event, EventKind, JobState, JobStatus

# The fixed clock of `bridge test` and of sample events, so outputs never depend on today.
FIXED_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
_JOB_EVENTS = frozenset(EventKind) - {EventKind.SOURCE_DOWN, EventKind.SOURCE_UP}
_DEFAULT_STATE = {
    EventKind.TRANSITION: JobState.FAILED,
    EventKind.PROGRESS: JobState.RUNNING,
    EventKind.STALLED: JobState.RUNNING,
    EventKind.APPEARED: JobState.PENDING,
    EventKind.VANISHED: JobState.RUNNING,
}
# What detection gives as `reason` (bridge.detect); other job events have none.
_SAMPLE_REASONS = {
    EventKind.STALLED: "no progress for 15m",
    EventKind.VANISHED: "the job is no longer in the source's job list",
}


def sample_event(kind: EventKind, *, source: str = "example", rule: Rule | None = None) -> Event:
    """A realistic event of `kind`, shaped to pass the rule's `from` / `to` filters."""
    if kind not in _JOB_EVENTS:
        down = kind is EventKind.SOURCE_DOWN
        return Event(
            id=f"evt_sample_{kind}", on=kind, source=source, at=FIXED_NOW,
            # source_up carries why the source was down, as detection sets it.
            reason="HTTP 503 Service Unavailable from GET /api/v2/job_statuses",
            duration=None if down else timedelta(minutes=7),
        )
    state = rule.to[0] if rule and rule.to else _DEFAULT_STATE[kind]
    before = rule.from_[0] if rule and rule.from_ else JobState.RUNNING
    job = _sample_job(state)
    return Event(
        id=f"evt_sample_{kind}",
        on=kind,
        source=source,
        at=FIXED_NOW,
        job=job,
        previous=None if kind is EventKind.APPEARED else _sample_job(before),
        from_state=before if kind is EventKind.TRANSITION else None,
        to_state=state if kind is EventKind.TRANSITION else None,
        first_seen=FIXED_NOW - timedelta(minutes=25),
        duration=timedelta(minutes=23, seconds=12),
        reason=_SAMPLE_REASONS.get(kind),
    )


def _sample_job(state: JobState, job_id: str = "8b72") -> JobStatus:
    failed = state in (JobState.FAILED, JobState.CANCELLED)
    progress = 100.0 if state is JobState.SUCCEEDED else 40.0
    return JobStatus(
        id=job_id,
        state=state,
        raw_state=str(state),
        progress=progress,
        message="Printer on fire" if failed else "Importing 120 of 300 tickets",
        url=f"https://example.com/jobs/{job_id}",
        fields={"id": job_id, "status": str(state), "progress": progress, "total": 300},
        failed_items=2 if failed else 0,
        run=1,
    )


def sample_group(rule: Rule, *, source: str = "example") -> OpenGroup:
    """A group as `rule` (with `group_by`) collects it, in its second flush: three jobs, the
    first two shown by the first digest, the third new (a success, unless the rule's `to`
    says otherwise)."""
    first = sample_event(rule.on, source=source, rule=rule)
    events = [first]
    for index, job_id in enumerate(("8b73", "8b74"), start=1):
        event = replace(first, id=f"{first.id}_{index}", at=first.at + timedelta(minutes=index))
        if event.job is not None:
            state = event.job.state
            if index == 2 and event.on is EventKind.TRANSITION and not rule.to:
                state = JobState.SUCCEEDED
                event = replace(event, to_state=state)
            event = replace(event, job=_sample_job(state, job_id))
        events.append(event)
    key = group_key(rule, first)
    return OpenGroup(id=group_id(rule.name, key, first.id), rule=rule.name, key=key,
                     first_at=first.at, due_at=events[-1].at, flushes=1,
                     events=[GroupedEvent(event=e, flushed=i < 2) for i, e in enumerate(events)])


def source_for(config: Config, rule: Rule | None) -> str:
    for source in config.sources:
        if rule is None or fnmatchcase(source.name, rule.source):
            return source.name
    return "example"


def event_from_data(data: Mapping[str, Any], config: Config, *, default_id: str) -> Event:
    """An event from a test or `--event` file, with sensible defaults for what is missing.

    `source` defaults to the first source, `at` to a fixed clock, `job.state` to `to`, and a
    transition's `previous` to the job in state `from`. Raises ValueError/KeyError on bad data.
    """
    if "on" not in data:
        raise ValueError("the event needs 'on' (transition, progress, stalled, ...)")
    kind = EventKind(data["on"])
    filled: dict[str, Any] = {"id": default_id, "source": source_for(config, None),
                              "at": FIXED_NOW.isoformat(), **data}
    job = filled.get("job")
    if kind in _JOB_EVENTS or job is not None:
        job = {"id": "test-job", **(job or {})}
        job.setdefault("state", filled.get("to") or str(_DEFAULT_STATE.get(kind, "unknown")))
        filled["job"] = job
        if filled.get("from") and not filled.get("previous"):
            filled["previous"] = {**job, "state": filled["from"], "raw_state": filled["from"]}
    return Event.from_dict(filled)




def reason(exc: BaseException) -> str:
    """Why event data was refused, for a one-line message."""
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
