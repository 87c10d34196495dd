"""Domain values that flow through the pipeline: job states, observations, events, deliveries.

Everything here is a frozen value with no I/O, so every stage can be tested with plain tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """The canonical job states of contract section 3."""

    PENDING = "pending"
    RUNNING = "running"
    BLOCKED = "blocked"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class EventKind(StrEnum):
    """What happened, as named in rules (`on = ...`)."""

    TRANSITION = "transition"
    PROGRESS = "progress"
    STALLED = "stalled"
    APPEARED = "appeared"
    VANISHED = "vanished"
    SOURCE_DOWN = "source_down"
    SOURCE_UP = "source_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """One job as seen at one moment: what a poll observes and what an event carries.

    `progress` is a percent (0..100) or None when the API reports none. `run` counts the
    runs of a recurring job (JTL syncs go from a terminal state back to running); pollers
    leave it at 1 and detection sets it.
    """

    id: str
    state: JobState
    raw_state: str
    progress: float | None = None
    message: str | None = None
    url: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    failed_items: int | None = None
    run: int = 1
    # What identifies the job's latest run at the API (JTL's `LastSync`): when it changes
    # while the job looks finished, the job ran again between two polls.
    run_key: str | None = None
    # When the API says the next run is due (JTL's `NextSync`); overdue and not running
    # means the run did not start.
    due_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "state": str(self.state),
            "raw_state": self.raw_state,
            "progress": self.progress,
            "message": self.message,
            "url": self.url,
            "fields": dict(self.fields),
            "failed_items": self.failed_items,
            "run": self.run,
        }
        # Only when set: most sources have neither, and their records stay as they were.
        if self.run_key is not None:
            data["run_key"] = self.run_key
        if self.due_at is not None:
            data["due_at"] = self.due_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStatus:
        progress = data.get("progress")
        failed = data.get("failed_items")
        return cls(
            id=str(data["id"]),
            state=JobState(data.get("state", "unknown")),
            raw_state=str(data.get("raw_state", data.get("state", ""))),
            progress=float(progress) if progress is not None else None,
            message=data.get("message"),
            url=data.get("url"),
            fields=dict(data.get("fields") or {}),
            failed_items=int(failed) if failed is not None else None,
            run=int(data.get("run", 1)),
            run_key=str(data["run_key"]) if data.get("run_key") is not None else None,
            due_at=_from_iso(data.get("due_at")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackedJob:
    """What the state store remembers of one job between polls."""

    source: str
    status: JobStatus
    first_seen: datetime
    last_seen: datetime
    # When the job was first seen running in its current run; the base of `duration`.
    started_at: datetime | None = None
    # When progress (or state) last moved; a running job idle past `stall_after` is stalled.
    moved_at: datetime
    stalled: bool = False
    # First poll that reported the job missing (404, NOT_FOUND, absent from the list).
    missing_since: datetime | None = None
    vanished: bool = False
    # When the job reached a terminal state (or vanished); the base of pruning.
    finished_at: datetime | None = None
    # Bumped by detection on every change of the record: it makes event ids unique per change
    # yet stable when the same observation is replayed against the same stored record.
    version: int = 0
    # False for an id known only as missing (a watched id the API never found): its first
    # real observation is then `appeared`, not a transition from `unknown`.
    seen: bool = True

    @property
    def id(self) -> str:
        return self.status.id

    @property
    def done(self) -> bool:
        """True once nothing more is expected of the job: terminal or vanished."""
        return self.vanished or self.status.state.terminal

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (the state store's and the API's shape); timestamps in ISO 8601."""
        return {
            "source": self.source,
            "status": self.status.as_dict(),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "started_at": _iso(self.started_at),
            "moved_at": self.moved_at.isoformat(),
            "stalled": self.stalled,
            "missing_since": _iso(self.missing_since),
            "vanished": self.vanished,
            "finished_at": _iso(self.finished_at),
            "version": self.version,
            "seen": self.seen,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackedJob:
        return cls(
            source=str(data["source"]),
            status=JobStatus.from_dict(data["status"]),
            first_seen=datetime.fromisoformat(data["first_seen"]),
            last_seen=datetime.fromisoformat(data["last_seen"]),
            started_at=_from_iso(data.get("started_at")),
            moved_at=datetime.fromisoformat(data["moved_at"]),
            stalled=bool(data.get("stalled", False)),
            missing_since=_from_iso(data.get("missing_since")),
            vanished=bool(data.get("vanished", False)),
            finished_at=_from_iso(data.get("finished_at")),
            version=int(data.get("version", 0)),
            seen=bool(data.get("seen", True)),
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceHealth:
    """Whether a source's last polls worked; drives `source_down` / `source_up`."""

    source: str
    up: bool = True
    since: datetime | None = None
    reason: str | None = None
    failures: int = 0
    last_poll_at: datetime | None = None
    last_latency: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing that happened, as rules and templates see it (contract section 4)."""

    id: str
    on: EventKind
    source: str
    at: datetime
    job: JobStatus | None = None
    previous: JobStatus | None = None
    from_state: JobState | None = None
    to_state: JobState | None = None
    first_seen: datetime | None = None
    duration: timedelta | None = None
    # Why a source went down (source_down) or a job is considered stalled/vanished.
    reason: str | None = None
    # A reminder from this rule's `repeat`: only that rule evaluates it (bridge.rules).
    repeat_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data: the shape of `bridge render --event` files and the API."""
        return {
            "id": self.id,
            "on": str(self.on),
            "source": self.source,
            "at": self.at.isoformat(),
            "job": self.job.as_dict() if self.job else None,
            "previous": self.previous.as_dict() if self.previous else None,
            "from": str(self.from_state) if self.from_state else None,
            "to": str(self.to_state) if self.to_state else None,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "duration": self.duration.total_seconds() if self.duration is not None else None,
            "reason": self.reason,
            "repeat_of": self.repeat_of,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        job = JobStatus.from_dict(data["job"]) if data.get("job") else None
        previous = JobStatus.from_dict(data["previous"]) if data.get("previous") else None
        duration = data.get("duration")
        first_seen = data.get("first_seen")
        at = datetime.fromisoformat(data["at"]) if data.get("at") else datetime.now().astimezone()
        on = EventKind(data["on"])
        source = str(data.get("source", ""))
        return cls(
            id=str(data.get("id") or event_id(source, on, job.id if job else "", at.isoformat())),
            on=on,
            source=source,
            at=at,
            job=job,
            previous=previous,
            from_state=JobState(data["from"]) if data.get("from") else None,
            to_state=JobState(data["to"]) if data.get("to") else None,
            first_seen=datetime.fromisoformat(first_seen) if first_seen else None,
            duration=timedelta(seconds=float(duration)) if duration is not None else None,
            reason=data.get("reason"),
            repeat_of=data.get("repeat_of"),
        )


def event_id(*parts: object) -> str:
    """A stable id from the facts that make an event unique, so replays give the same id."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"evt_{digest[:24]}"


class Priority(StrEnum):
    """How urgent a notification is: the outbox and each Slack channel send the most urgent
    first. A rule may set it (`priority = "high"`); otherwise `Priority.of(event)`."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for the most urgent: the outbox's `priority` column, sorted ascending."""
        return _RANKS[self]

    @classmethod
    def of(cls, event: Event) -> Priority:
        """Failures and trouble first (failed, cancelled, stalled, vanished, source_down),
        then outcomes (succeeded, source_up, blocked), then the noise (appeared, running,
        progress)."""
        if event.on in _URGENT_KINDS:
            return cls.HIGH
        state = event.job.state if event.job is not None else None
        if state in (JobState.FAILED, JobState.CANCELLED):
            return cls.HIGH
        if event.on is EventKind.SOURCE_UP or state in (JobState.SUCCEEDED, JobState.BLOCKED):
            return cls.NORMAL
        return cls.LOW


_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}
_URGENT_KINDS = frozenset({EventKind.STALLED, EventKind.VANISHED, EventKind.SOURCE_DOWN})


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A rendered message for one sink, produced by a rule from an event; queued in the outbox."""

    event_id: str
    rule: str
    sink: str
    source: str
    job_id: str | None
    # `text` always; `blocks` for Slack Block Kit; `body` for a webhook body template.
    payload: Mapping[str, Any]
    # The kind of event and whether the job reached a terminal state; sinks use these to
    # thread failures and never coalesce away a final state.
    on: EventKind
    terminal: bool = False
    # The job's canonical state after the event (None for source events); Slack's update mode
    # adds a threaded reply when it is failed or cancelled.
    state: str | None = None
    # The rule's `priority`, else the event's (`Priority.of`): what is sent first.
    priority: Priority = Priority.NORMAL

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data: how the outbox stores a notification (`payload` must be JSON)."""
        return {
            "event_id": self.event_id,
            "rule": self.rule,
            "sink": self.sink,
            "source": self.source,
            "job_id": self.job_id,
            "payload": dict(self.payload),
            "on": str(self.on),
            "terminal": self.terminal,
            "state": self.state,
            "priority": str(self.priority),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        job_id = data.get("job_id")
        return cls(
            event_id=str(data["event_id"]),
            rule=str(data["rule"]),
            sink=str(data["sink"]),
            source=str(data["source"]),
            job_id=str(job_id) if job_id is not None else None,
            payload=dict(data.get("payload") or {}),
            on=EventKind(data["on"]),
            terminal=bool(data.get("terminal", False)),
            state=str(data["state"]) if data.get("state") is not None else None,
            # Rows queued before priorities existed are normal.
            priority=Priority(data.get("priority") or Priority.NORMAL),
        )

    @property
    def delivery_id(self) -> str:
        """Stable per (event, rule, sink): the outbox row's key and the Standard Webhooks
        `webhook-id` of every attempt. Two rules notifying one sink for one event are two
        deliveries. Rows queued by the previous release were keyed per (event, sink); they
        keep their stored id, so their retries still carry the id they were first sent with.
        """
        parts = f"{self.event_id}\x1f{self.rule}\x1f{self.sink}"
        return "msg_" + hashlib.sha256(parts.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A notification as the outbox holds it, with its delivery bookkeeping."""

    id: str
    notification: Notification
    created_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResult:
    """A successful poll: the jobs the source reported.

    `complete` says the response listed every live job, so a tracked job absent from it is
    missing. `missing` names ids the API answered as gone (404, NOT_FOUND) this time.
    """

    observations: Sequence[JobStatus]
    complete: bool = False
    missing: frozenset[str] = frozenset()
    # Ids whose lookup failed this poll (a 500 on one of them): neither changed nor missing.
    unknown: frozenset[str] = frozenset()
