"""The default webhook body (contract section 6) as typed models: one per event type.

Every default body bridge sends is built by `build` through the model of its type, and the
JSON Schemas that `bridge schema`, `GET /v1/schema` and `docs/webhooks.md` publish are
generated from the same models, so the body and its schema cannot drift apart. A body that
does not fit its model is an `EnvelopeError` (a TemplateError: the pipeline logs it and
counts a render error, as for a broken template) rather than a body that breaks consumers.

`data.schema_version` names the shape: any change to the keys or meaning of the body bumps
it, and each schema describes exactly one version (`additionalProperties: false`).

A new event type is one entry in `ENTRIES` (and, when its data differs, one data model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema

from bridge.errors import BridgeError, TemplateError
from bridge.model import Event, EventKind, JobState, JobStatus

# "2": `data.job.name` (and every `jobs[].job` / `events[].job` of a group) was added.
SCHEMA_VERSION = "2"
# The type of a group's digest (one POST per flush); every other type is one event.
GROUP_TYPE = "job.group"
# A sink's daily reminder of long silences (bridge.silence_reminder): about no one event.
REMINDER_TYPE = "silence.reminder"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


class EnvelopeError(TemplateError):
    """An event whose default body would not match its published schema."""


class UnknownEventType(BridgeError):
    """A `bridge schema TYPE` (or `/v1/schema/TYPE`) naming no type of the catalog."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Timestamp = Annotated[str, Field(
    pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
    json_schema_extra={"format": "date-time"},
    description="when the event happened: UTC, ISO 8601, whole seconds",
)]


class Job(_Strict):
    """The job as this poll saw it."""

    id: str = Field(description="the job's id at its source")
    state: JobState = Field(description="canonical state (contract section 3)")
    raw_state: str = Field(description="the state as the source's API spells it")
    progress: float | None = Field(
        description="percent done, 0 to 100; null when the API reports none")
    message: str | None = Field(description="the API's message about the job (an error, a note)")
    url: str | None = Field(description="a link to the job, when the source knows one")
    fields: dict[str, Any] = Field(description="the raw item the API returned for the job")
    failed_items: int | None = Field(
        description="items the job reported as failed; null when the API reports none")
    run: int = Field(ge=1, description="which run of a recurring job this is (1, 2, ...)")
    name: str | None = Field(
        description="what people call the job, when its API says (JTL: the sync's "
                    "`salesChannelName: syncName`, \"Amazon DE: orders\"); null otherwise")


class Data(_Strict):
    """What happened; the keys every type has (null where a type has no value)."""

    event_id: str = Field(description="the event's id: stable, the same on every retry")
    rule: str = Field(description="the rule that matched the event")
    source: str = Field(description="the configured source's name")
    from_: JobState | None = Field(
        alias="from", description="the state before a transition; null for other types")
    to: JobState | None = Field(
        description="the state after a transition; on a `repeat` reminder, the state the job "
                    "is still in; null otherwise")
    text: str = Field(description="the rule's template rendered as plain text")
    job: Job | None = Field(description="the job; null for source events")
    reason: str | None = Field(
        description="why: a stall or vanish reason, why a source is or was down, a reminder")
    schema_version: Literal["2"] = Field(
        description="the version of this body's shape; bumped by any change to its keys or "
                    "their meaning")


class TransitionData(Data):
    """A job changed canonical state."""

    from_: JobState | None = Field(
        alias="from", description="the state before; null only on a `repeat` reminder")
    to: JobState = Field(description="the state after (the job's state now)")
    job: Job = Field(description="the job, in its new state")


class JobData(Data):
    """Something happened to a job; its state did not change."""

    from_: None = Field(alias="from", description="always null (transitions only)")
    job: Job = Field(description="the job")


class SourceData(Data):
    """A source's health changed."""

    from_: None = Field(alias="from", description="always null (transitions only)")
    to: None = Field(description="always null (transitions only)")
    job: None = Field(description="always null: a source event is about no one job")


class SourceDownData(SourceData):
    """A source's polls fail."""

    reason: str = Field(description="why the source's polls fail (the last error)")


class SourceUpData(SourceData):
    """A source that was down answers again."""

    reason: str | None = Field(description="why the source was down")


class GroupEvent(_Strict):
    """One event of a group, as it happened."""

    event_id: str = Field(description="the event's id (its own `webhook-id` were it sent alone)")
    on: EventKind = Field(description="the event's kind (a rule's `on`)")
    source: str = Field(description="the configured source's name")
    at: Timestamp
    from_: JobState | None = Field(alias="from", description="the state before a transition")
    to: JobState | None = Field(description="the state after a transition")
    job: Job | None = Field(description="the job as this event saw it; null for source events")
    reason: str | None = Field(description="why: a stall or vanish reason, a source's error")


class GroupJob(_Strict):
    """One job of a group, in the state its latest event in the group left it."""

    source: str = Field(description="the configured source's name")
    job: Job = Field(description="the job as its latest event in the group saw it")
    events: int = Field(ge=1, description="how many of the group's events are about this job")


class GroupData(_Strict):
    """A digest of a rule's grouped events (`group_by`): the whole group so far."""

    group_id: str = Field(description="the group's id: the same in every flush of the group")
    rule: str = Field(description="the rule whose `group_by` made the group")
    group: dict[str, str | int | float | bool | None] = Field(
        description="the group's key: each `group_by` field and its value")
    flush: int = Field(ge=1, description="which flush of the group this is (1, 2, ...)")
    text: str = Field(description="the rule's `group_template` rendered as plain text")
    counts: dict[str, int] = Field(description="the group's jobs per state (latest state)")
    jobs: list[GroupJob] = Field(description="every job of the group, latest state")
    events: list[GroupEvent] = Field(
        description="every event of the group so far, oldest first; the last `new_events` "
                    "are new since the previous flush")
    new_events: int = Field(ge=0, description="how many of `events` no earlier flush carried")
    schema_version: Literal["2"] = Field(
        description="the version of this body's shape; bumped by any change to its keys or "
                    "their meaning")


class ReminderSilence(_Strict):
    """One long silence in a reminder."""

    id: str = Field(description="the silence's id (`bridge silence expire ID` ends it)")
    matchers: dict[str, str] = Field(description="event field -> glob; all must match")
    starts: Timestamp
    ends: Annotated[str | None, Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
        description="when it ends (UTC); null when it ends only when its job succeeds")]
    until_resolved: bool = Field(description="it ends when its job reaches `succeeded`")
    comment: str = Field(description="why it was made")
    author: str = Field(description="who made it")
    silenced: int = Field(ge=0, description="notifications it muted that the outbox still "
                                            "records (kept 7 days)")


class ReminderData(_Strict):
    """The daily reminder of a sink's `silence_reminder`: the silences in force for long."""

    sink: str = Field(description="the sink this reminder is for")
    text: str = Field(description="the reminder's template rendered as plain text")
    longer_than: int = Field(ge=1, description="the sink's `longer_than`, in seconds: a "
                                               "silence on or ending that far off is listed")
    silences: list[ReminderSilence] = Field(
        min_length=1, description="the long silences in force, oldest first")
    schema_version: Literal["2"] = Field(
        description="the version of this body's shape; bumped by any change to its keys or "
                    "their meaning")


@dataclass(frozen=True, slots=True)
class EventType:
    """One entry of the catalog: a `type` value, what it means, and the model of its body."""

    name: str
    # The `on` of the events sent with this type (a rule's `on`).
    on: str
    summary: str
    model: type[BaseModel]


def _entry(on: EventKind | str, summary: str, data: type[BaseModel]) -> EventType:
    name = f"job.{on}"
    # A Literal of a runtime value: the `type` constant of this model's schema.
    const = cast(Any, Literal)[name]
    model = create_model(
        "".join(part.title() for part in str(on).split("_")) + "Webhook",
        __base__=_Strict,
        __doc__=f"The default webhook body of a `{name}` event: {summary}.",
        type=(const, Field(description="`job.` and the event's kind (a rule's `on`)")),
        timestamp=(Timestamp, ...),
        data=(data, ...),
    )
    return EventType(name=name, on=str(on), summary=summary, model=model)


ENTRIES: tuple[EventType, ...] = (
    _entry(EventKind.APPEARED, "a job is seen for the first time, in whatever state it is in",
           JobData),
    _entry(EventKind.TRANSITION, "a job changed canonical state (from -> to)", TransitionData),
    _entry(EventKind.PROGRESS, "a job's progress crossed a `progress_step` boundary (25% by "
           "default)", JobData),
    _entry(EventKind.STALLED, "a running job's progress has not moved for `stall_after`",
           JobData),
    _entry(EventKind.VANISHED, "a job went missing (404, or absent from a full list) before it "
           "finished", JobData),
    _entry(EventKind.SOURCE_DOWN, "a source's polls fail (after `down_after` failures); no job "
           "changes while it is down", SourceDownData),
    _entry(EventKind.SOURCE_UP, "a source that was down answers again", SourceUpData),
    _entry("group", "a digest of one rule's events with equal `group_by` values: one POST per "
           "flush (`group_wait` after the first event, then at most once per "
           "`group_interval`)", GroupData),
    EventType(name=REMINDER_TYPE, on="silence_reminder",
              summary="once a day, the silences in force for long (a sink's "
                      "`silence_reminder`); not sent when none is", model=create_model(
                          "SilenceReminderWebhook", __base__=_Strict,
                          __doc__="The daily reminder of long silences.",
                          type=(cast(Any, Literal)[REMINDER_TYPE], Field(
                              description="`silence.reminder`")),
                          timestamp=(Timestamp, ...), data=(ReminderData, ...))),
)
CATALOG: Mapping[str, EventType] = {entry.name: entry for entry in ENTRIES}
_BY_ON: Mapping[str, EventType] = {entry.on: entry for entry in ENTRIES}


def lookup(name: str) -> EventType:
    """The type named `job.transition` (or just `transition`); UnknownEventType otherwise."""
    entry = CATALOG.get(name) or _BY_ON.get(name)
    if entry is None:
        known = ", ".join(CATALOG)
        raise UnknownEventType(f"no event type {name!r}; the types are: {known} "
                               "(`bridge schema` lists them)")
    return entry


_JOB_KEYS = tuple(Job.model_fields)  # read once: pydantic's accessor costs per call


def job_body(job: JobStatus) -> dict[str, Any]:
    """The job as every body publishes it (`data.job`, a group's `jobs[].job`,
    `events[].job`): the keys of `Job`, `name` null when unknown; values as the job holds
    them, for the body's model to validate and write."""
    # Detection's own bookkeeping (JTL's `run_key`, `due_at`) is not part of the body: a new
    # JobStatus field must not make every body of its source fail validation (and drop).
    # Read from the job itself, not from its `as_dict()`: dumping the job first was a third
    # of a body's cost, and the model validates and writes the values anyway.
    return {key: getattr(job, key) for key in _JOB_KEYS}


def build(event: Event, rule: str, text: str, timestamp: str) -> dict[str, Any]:
    """The default body of `event` for `rule`, built through its type's model.

    Raises EnvelopeError when the event does not fit (an event file given to `bridge render`
    or `bridge test` can describe impossible events; the pipeline never makes one).
    """
    return _dumped(_event_body(event, rule, text, timestamp))


def build_json(event: Event, rule: str, text: str, timestamp: str) -> str:
    """`build` as the compact JSON text that is sent (UTF-8, not ASCII-escaped), written by
    the model itself: no dict in between to dump again, once per notification."""
    return _event_body(event, rule, text, timestamp).model_dump_json(by_alias=True)


def _event_body(event: Event, rule: str, text: str, timestamp: str) -> BaseModel:
    entry = _BY_ON.get(str(event.on))
    if entry is None:
        raise EnvelopeError(f"event kind {event.on!r} has no entry in the webhook catalog "
                            "(bridge.webhooks.catalog.ENTRIES)")
    job = event.job
    raw = {
        "type": entry.name,
        "timestamp": timestamp,
        "data": {
            "event_id": event.id,
            "rule": rule,
            "source": event.source,
            "from": event.from_state,
            "to": event.to_state,
            "text": text,
            "job": job_body(job) if job is not None else None,
            "reason": event.reason,
            "schema_version": SCHEMA_VERSION,
        },
    }
    return _validated(entry, raw, f"the {entry.name} body of event {event.id}",
                      f"; see `bridge schema {entry.name}`")


def build_group(data: Mapping[str, Any], timestamp: str) -> dict[str, Any]:
    """The default body of one flush of a group (`data` as GroupData names it), built
    through its model; EnvelopeError if it does not fit."""
    entry = CATALOG[GROUP_TYPE]
    raw = {"type": entry.name, "timestamp": timestamp,
           "data": {**data, "schema_version": SCHEMA_VERSION}}
    return _dumped(_validated(entry, raw,
                              f"the job.group body of group {data.get('group_id')}"))


def build_reminder(data: Mapping[str, Any], timestamp: str) -> dict[str, Any]:
    """The `silence.reminder` body (`data` as ReminderData names it), through its model."""
    entry = CATALOG[REMINDER_TYPE]
    raw = {"type": entry.name, "timestamp": timestamp,
           "data": {**data, "schema_version": SCHEMA_VERSION}}
    return _dumped(_validated(entry, raw, f"the silence reminder for sink {data.get('sink')}"))


def _validated(entry: EventType, raw: dict[str, Any], what: str, hint: str = "") -> BaseModel:
    """`raw` validated by the entry's model; EnvelopeError naming `what` and every field
    that does not fit otherwise."""
    try:
        return entry.model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        raise EnvelopeError(f"{what} does not match its schema ({problems}){hint}") from None


def _dumped(body: BaseModel) -> dict[str, Any]:
    """A validated body as the JSON-ready data that is sent."""
    return body.model_dump(mode="json", by_alias=True)


class _Generator(GenerateJsonSchema):
    # Property titles ("Event Id") only repeat the key; descriptions say what it means.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the default body of type `name`."""
    entry = lookup(name)
    schema = entry.model.model_json_schema(by_alias=True, schema_generator=_Generator)
    return {"$schema": DIALECT, **schema}


def listing() -> list[dict[str, str]]:
    """The catalog as data: each type with its summary and where its schema is served."""
    return [{"type": entry.name, "on": entry.on, "summary": entry.summary,
             "schema": f"/v1/schema/{entry.name}"} for entry in ENTRIES]
