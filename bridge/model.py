"""Domain values that flow through the pipeline: job states, observations, events, deliveries.

Everything here is a frozen value with no I/O, so every stage can be tested with plain tables.
Their JSON form (the state store's rows, the API, `--event` files) comes from one codec,
pydantic over the dataclasses' own field types: `to_data` / `to_json` / `from_data` /
`from_json` (the `as_dict` / `from_dict` methods are those, plus the defaults a hand-written
event file may leave out).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

T = TypeVar("T")


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
# Written only when set: most sources have neither, and their records stay as they were.
_OMIT_NONE = Field(exclude_if=lambda value: value is None)
# Decoded through the enum itself, so a bad value reads "'x' is not a valid JobState".
State = Annotated[JobState, BeforeValidator(JobState)]


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

    # An id may be written as a number in a hand-written event file.
    __pydantic_config__ = ConfigDict(coerce_numbers_to_str=True)

    id: str
    state: State
    raw_state: str
    progress: float | None = None
    message: str | None = None
    url: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    failed_items: int | None = None
    run: int = 1
    # What identifies the job's latest run at the API (JTL's `LastSync`): when it changes
    # while the job looks finished, the job ran again between two polls.
    run_key: Annotated[str | None, _OMIT_NONE] = None
    # When the API says the next run is due (JTL's `NextSync`); overdue and not running
    # means the run did not start.
    due_at: Annotated[datetime | None, _OMIT_NONE] = None
    # What people call the job, when the API says (JTL: "Amazon DE: orders", from the
    # sync's salesChannelName and syncName); templates show it instead of the id.
    name: Annotated[str | None, _OMIT_NONE] = None

    def as_dict(self) -> dict[str, Any]:
        return to_data(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobStatus:
        return from_data(cls, job_data(data))


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
        return to_data(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackedJob:
        return from_data(cls, data)


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

    # `from` and `to` in JSON; a duration in seconds.
    __pydantic_config__ = ConfigDict(ser_json_timedelta="float", serialize_by_alias=True)

    id: str
    on: Annotated[EventKind, BeforeValidator(EventKind)]
    source: str
    at: datetime
    job: JobStatus | None = None
    previous: JobStatus | None = None
    from_state: Annotated[State | None, Field(alias="from")] = None
    to_state: Annotated[State | None, Field(alias="to")] = None
    first_seen: datetime | None = None
    duration: timedelta | None = None
    # Why a source went down (source_down) or a job is considered stalled/vanished.
    reason: str | None = None
    # A reminder from this rule's `repeat`: only that rule evaluates it (bridge.rules).
    repeat_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data: the shape of `bridge render --event` files and the API."""
        return to_data(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """An event from its JSON form. A hand-written one may leave out `id` (made from its
        facts), `at` (now), `source`, and a job's `state` and `raw_state`; empty is absent."""
        filled = {key: value for key, value in data.items()
                  if value not in ("", {}) or key not in _EMPTY_IS_ABSENT}
        if "on" not in filled:
            raise DataError("missing 'on' (transition, progress, stalled, ...)")
        at = filled.get("at") or datetime.now().astimezone()
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        source = filled.setdefault("source", "")
        for key in ("job", "previous"):
            if isinstance(filled.get(key), Mapping):
                filled[key] = job_data(filled[key])
        job = filled.get("job")
        if "id" not in filled:
            job_id = job.get("id", "") if isinstance(job, Mapping) else ""
            filled["id"] = event_id(source, filled["on"], job_id, at.isoformat())
        return from_data(cls, {**filled, "at": at})


_EMPTY_IS_ABSENT = frozenset({"id", "at", "job", "previous", "from", "to", "first_seen"})


def job_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A job's JSON form with what a hand-written one may leave out: `state` is unknown,
    `raw_state` the state, no `fields`."""
    if "raw_state" in data and data.get("state") and data.get("fields") is not None:
        return data  # complete, as stored
    state = data.get("state") or "unknown"
    return {**data, "state": state, "raw_state": data.get("raw_state", data.get("state", "")),
            "fields": data.get("fields") or {}}


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
    # Muted by a silence or a maintenance window: recorded, never sent.
    SILENCED = "silenced"
    # A newer notification of the same message (Slack `update` mode) took its place while it
    # waited unsent: counted as delivered, kept for the record (bridge.store.coalesce).
    SUPERSEDED = "superseded"


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
    # thread failures and never coalesce away a final state. A sink's daily reminder of
    # long silences (bridge.silence_reminder) is about no one event: `silence_reminder`.
    on: EventKind | Literal["silence_reminder"]
    terminal: bool = False
    # The job's canonical state after the event (None for source events); Slack's update mode
    # adds a threaded reply when it is failed or cancelled.
    state: str | None = None
    # The rule's `priority`, else the event's (`Priority.of`): what is sent first.
    priority: Priority = Priority.NORMAL
    # Why it is not sent ("silence sil_... (comment)", "window nightly"); None: it is sent.
    silenced: str | None = None
    # A group's digest (bridge.groups): `job_id` is then the group's id, not a job's.
    digest: Annotated[bool, Field(exclude_if=lambda value: not value)] = False
    # One thread reply under a digest's message (Slack `update` mode): a row of its own, so
    # a retry never posts a reply that was already sent again.
    thread_reply: Annotated[bool, Field(exclude_if=lambda value: not value)] = False
    # Edits its job's one message (Slack `update` mode): while an earlier row of the same
    # message waits unsent in the outbox, this one takes its place (bridge.store.coalesce).
    coalesce: Annotated[bool, Field(exclude_if=lambda value: not value)] = False
    # The source's kind (`jtl`): which Slack buttons fit its job (a JTL Restart only on a
    # JTL sync). None on rows queued before it was recorded.
    source_kind: Annotated[str | None, _OMIT_NONE] = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data: how the outbox stores a notification (`payload` must be JSON)."""
        return to_data(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        # Rows queued before priorities existed are normal.
        return from_data(cls, {**data, "priority": data.get("priority") or Priority.NORMAL})

    @property
    def delivery_id(self) -> str:
        """Stable per (event, rule, sink): the outbox row's key and the Standard Webhooks
        `webhook-id` of every attempt. Two rules notifying one sink for one event are two
        deliveries. Rows queued by the previous release were keyed per (event, sink); they
        keep their stored id, so their retries still carry the id they were first sent with.
        """
        return _delivery_id(self.event_id, self.rule, self.sink)


@functools.lru_cache(maxsize=4096)
def _delivery_id(event_id: str, rule: str, sink: str) -> str:
    # Cached: one commit asks for a row's id several times (insert, take, hand over), and
    # the hash was 2% of the push -> webhook path's CPU (`make bench-peer`, py-spy).
    parts = f"{event_id}\x1f{rule}\x1f{sink}"
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
    # How many waiting rows of the same message this one took the place of (coalesce).
    replaced: int = 0


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


# --- the codec ------------------------------------------------------------------------------


class DataError(ValueError):
    """JSON that does not make a domain value: says what is wrong and where."""


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    # Built on first use: pydantic resolves the string annotations once every class exists.
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return cast(TypeAdapter[T], adapter)


def to_data(value: Any) -> dict[str, Any]:
    """A domain value as JSON-ready data, field by field as its dataclass declares them."""
    return cast(dict[str, Any], _adapter(type(value)).dump_python(value, mode="json"))


def to_json(value: Any) -> str:
    """`to_data` written as compact JSON text (UTF-8, not ASCII-escaped)."""
    return _adapter(type(value)).dump_json(value).decode()


def from_data(cls: type[T], data: Any) -> T:
    """A domain value from JSON-ready data; DataError (a ValueError) names the bad field."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise DataError(_readable(exc)) from None


def from_json(cls: type[T], text: str | bytes) -> T:
    """A domain value from JSON text (see `from_data`)."""
    try:
        return _adapter(cls).validate_json(text)
    except ValidationError as exc:
        raise DataError(_readable(exc)) from None


def _readable(exc: ValidationError) -> str:
    """The first problem of a validation error, as one line: what, then where."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"missing {where!r}"
    cause = (error.get("ctx") or {}).get("error")
    reason = str(cause) if cause is not None else error["msg"]
    return f"{reason} (at {where})" if where else reason
