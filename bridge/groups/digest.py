"""Digests: an open group -> one notification per sink of its rule (`group_template`).

The template sees `group` (the key: `group.source`), `events` (every event of the group so
far, oldest first), `new_events` (those no earlier digest showed), `jobs` (each job in its
latest state, with its duration), `counts` (jobs per state, failures first), `flush` (1, 2,
...), `rule`, `first_at` and `at`. A Slack sink in `update` mode edits the group's one
message in place (its `job_id` is the group's id) and gets, under it, a thread reply per
newly failed or cancelled job, rendered with the rule's own `template`; a webhook sink gets
one `job.group` body per flush (bridge.webhooks.catalog).

A rendered digest shows its replies in `payload["replies"]` (what `bridge test` and `bridge
render` read); the outbox holds each reply as a row of its own (`outbox_rows`), after the
digest's row, so each is recorded as sent by itself: a retry after some replies went out
posts only the ones that did not, never one twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config.schema import Config, Rule, SinkBase
from bridge.errors import TemplateError
from bridge.groups.model import OpenGroup
from bridge.model import Event, EventKind, JobState, JobStatus, Notification, Priority
from bridge.render import Renderer, RenderError
from bridge.sinks import sink_capabilities
from bridge.sinks.base import PayloadShape
from bridge.webhooks import catalog

# `counts` lists states in this order: what needs a look first.
STATE_ORDER = tuple(JobState[name] for name in (
    "FAILED", "CANCELLED", "BLOCKED", "UNKNOWN", "RUNNING", "PENDING", "SUCCEEDED"))
_ALERT_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})
_EVENT_NAMES: Mapping[str, Any] = {
    "on": "group", "event": None, "job": None, "previous": None, "from": None, "to": None,
    "reason": None, "duration": None, "first_seen": None}


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupJob:
    """A job of a group as its latest event in the group left it (what `jobs` lists)."""

    source: str
    job: JobStatus
    on: EventKind
    at: datetime
    duration: timedelta | None
    events: int
    # Changed since the previous digest.
    new: bool

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def state(self) -> JobState:
        return self.job.state

    @property
    def url(self) -> str | None:
        return self.job.url

    @property
    def message(self) -> str | None:
        return self.job.message


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A digest (or one of its replies) whose template failed for one sink."""

    group: str
    rule: str
    sink: str
    error: str
    # The template at fault when it is known (a sink's `body`, say), so `bridge check` can
    # point at the line that names it rather than at the rule's `group_template`.
    template: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    notifications: Sequence[Notification] = ()
    failures: Sequence[Failure] = field(default_factory=list)


def group_jobs(group: OpenGroup) -> list[GroupJob]:
    """Each job of the group in its latest state, in the order they joined the group."""
    jobs: dict[tuple[str, str], GroupJob] = {}
    for grouped in group.events:
        event = grouped.event
        if event.job is None:
            continue
        key = (event.source, event.job.id)
        before = jobs.get(key)
        jobs[key] = GroupJob(
            source=event.source, job=event.job, on=event.on, at=event.at,
            duration=event.duration if event.duration is not None else (
                before.duration if before else None),
            events=before.events + 1 if before else 1,
            new=not grouped.flushed or bool(before and before.new))
    return list(jobs.values())


def counts_of(jobs: Sequence[GroupJob]) -> dict[str, int]:
    counted = {str(state): sum(1 for j in jobs if j.state is state) for state in STATE_ORDER}
    return {state: count for state, count in counted.items() if count}


def digest_context(group: OpenGroup, rule: str, now: datetime) -> dict[str, Any]:
    """The names a group template sees."""
    jobs = group_jobs(group)
    return {
        "group": dict(group.values),
        "group_id": group.id,
        "rule": rule,
        "events": [grouped.event for grouped in group.events],
        "new_events": group.new,
        "jobs": jobs,
        "counts": counts_of(jobs),
        "flush": group.flushes + 1,
        "first_at": group.first_at,
        "at": now,
    }


def group_source(rule: Rule, group: OpenGroup) -> str:
    """The source a digest is filed under: the key's source when grouped by it, else the
    rule's (`*` for any). Stable across flushes: the group's Slack message is found by it."""
    source = group.values.get("source")
    return source if isinstance(source, str) else rule.source


class Digests:
    """Renders the digests of a config's grouped rules."""

    def __init__(self, config: Config, renderer: Renderer):
        self._rules = {rule.name: rule for rule in config.rules}
        self._sinks = {sink.name: sink for sink in config.sinks}
        self._renderer = renderer

    def rule(self, name: str, group: OpenGroup | None = None) -> Rule | None:
        """The grouped rule `name`, or None if the config no longer has it grouped. A
        window summary's group (bridge.stages.silence) renders with any rule of that name."""
        rule = self._rules.get(name)
        if rule is None:
            return None
        summary = group is not None and set(group.values) == {"window", "ends"}
        return rule if rule.grouped or summary else None

    def render(self, group: OpenGroup, now: datetime) -> Rendered:
        """One notification per sink of the group's rule (none without a new event)."""
        rule = self.rule(group.rule, group)
        new = group.new
        if rule is None or not new:
            return Rendered()
        context = digest_context(group, rule.name, now)
        priority = rule.priority or min((Priority.of(e) for e in new), key=lambda p: p.rank)
        notifications: list[Notification] = []
        failures: list[Failure] = []
        for sink_name in rule.notify:
            sink = self._sinks[sink_name]
            try:
                payload = self._payload(rule, group, context, sink, failures)
            except TemplateError as exc:
                at_fault = exc.template if isinstance(exc, RenderError) else None
                failures.append(Failure(group=group.id, rule=rule.name, sink=sink_name,
                                        error=str(exc), template=at_fault))
                continue
            notifications.append(Notification(
                event_id=f"{group.id}:{context['flush']}", rule=rule.name, sink=sink_name,
                source=group_source(rule, group), job_id=group.id, payload=payload,
                on=new[0].on, terminal=bool(payload.get("replies")), priority=priority,
                digest=True, coalesce=sink_capabilities(sink).edits_in_place))
        return Rendered(notifications=notifications, failures=failures)

    def _payload(self, rule: Rule, group: OpenGroup, context: Mapping[str, Any], sink: SinkBase,
                 failures: list[Failure]) -> dict[str, Any]:
        renderer = self._renderer
        shape = renderer.shape(sink)
        if shape is PayloadShape.SLACK:
            payload = renderer.slack(rule.group_template, context)
            # A sink that edits one message per job (Slack `update`) threads the failures.
            if sink_capabilities(sink).edits_in_place:
                replies = self._replies(rule, group, sink, failures)
                if replies:
                    payload["replies"] = replies
            return payload
        text = renderer.text(rule.group_template, context)
        if shape is not PayloadShape.WEBHOOK:
            return {"text": text}
        template = sink.body_template()
        if template:
            # The event names a body template written for single events reads, as a digest
            # has them: `on` is "group", the job and transition names are null.
            body = renderer.body(template, {**_EVENT_NAMES, **context, "text": text,
                                             "sink": sink.name,
                                             "source": group_source(rule, group)})
        else:
            body = json.dumps(envelope(group, rule.name, text, context),
                              ensure_ascii=False, separators=(",", ":"))
        return {"text": text, "body": body}

    def _replies(self, rule: Rule, group: OpenGroup, sink: SinkBase,
                 failures: list[Failure]) -> list[dict[str, Any]]:
        """A thread reply per new event that failed or cancelled a job, as the rule's own
        template shows it."""
        replies = []
        for event in group.new:
            if not _alerts(event):
                continue
            try:
                replies.append(self._renderer.render(rule, event, sink))
            except TemplateError as exc:
                failures.append(Failure(group=group.id, rule=rule.name, sink=sink.name,
                                        error=f"thread reply for event {event.id}: {exc}"))
        return replies


def outbox_rows(digest: Notification) -> list[Notification]:
    """The outbox rows of a rendered digest: the digest itself without its replies, then one
    row per thread reply, in order. They share the digest's `job_id` (the group's id), so
    they reach Slack after it, in order; a reply row is never coalesced away."""
    replies = digest.payload.get("replies")
    if not isinstance(replies, list) or not replies:
        return [digest]
    payload = {name: value for name, value in digest.payload.items() if name != "replies"}
    # Terminal: a newer digest never takes the place of one whose replies wait behind it
    # (they go under the message it posts).
    rows = [replace(digest, payload=payload, terminal=True)]
    rows.extend(Notification(
        event_id=f"{digest.event_id}:reply:{index}", rule=digest.rule, sink=digest.sink,
        source=digest.source, job_id=digest.job_id, payload=reply, on=digest.on,
        terminal=True, priority=digest.priority, thread_reply=True, coalesce=False)
        for index, reply in enumerate(replies, start=1))
    return rows


def _alerts(event: Event) -> bool:
    job = event.job
    return (job is not None and job.state in _ALERT_STATES
            and event.on in (EventKind.TRANSITION, EventKind.APPEARED))


def envelope(group: OpenGroup, rule: str, text: str, context: Mapping[str, Any]
             ) -> dict[str, Any]:
    """The default `job.group` webhook body of one flush."""
    jobs: Sequence[GroupJob] = context["jobs"]
    data = {
        "group_id": group.id,
        "rule": rule,
        "group": dict(group.values),
        "flush": context["flush"],
        "text": text,
        "counts": context["counts"],
        "jobs": [{"source": j.source, "job": catalog.job_body(j.job), "events": j.events}
                 for j in jobs],
        "events": [_event_data(grouped.event) for grouped in group.events],
        "new_events": len(context["new_events"]),
    }
    return catalog.build_group(data, _stamp(context["at"]))


def _event_data(event: Event) -> dict[str, Any]:
    return {"event_id": event.id, "on": event.on, "source": event.source, "at": _stamp(event.at),
            "from": event.from_state, "to": event.to_state,
            "job": catalog.job_body(event.job) if event.job is not None else None,
            "reason": event.reason}


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
