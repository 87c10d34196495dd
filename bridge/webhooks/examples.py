"""Real examples of every webhook type: sample events through the real renderer and signer.

`render_examples` renders `bridge.checks.sample_event` of each type with a rule whose
template is `<on>.slack.j2` (shipped with bridge), for one sink, into the `Notification` the
pipeline would queue; `signed_request` signs one the way the webhook sink does. The
catalog's examples (`bridge schema`, docs/webhooks.md) and `bridge notify-test` are both
made here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import time
from pathlib import Path

from bridge.checks import FIXED_NOW, sample_event
from bridge.checks.samples import sample_group
from bridge.config.schema import BridgeSettings, Config, Rule, SinkBase, WebhookSink
from bridge.errors import TemplateError
from bridge.groups.digest import Digests
from bridge.model import Event, EventKind, Notification
from bridge.render import Renderer
from bridge.resources import bundled_templates
from bridge.signing import decode_secret, signed_headers
from bridge.webhooks.catalog import ENTRIES, GROUP_TYPE, REMINDER_TYPE, EventType

# Documented in docs/webhooks.md so a reader can check the example signature: never use it.
EXAMPLE_SECRET = "whsec_" + base64.b64encode(b"bridge example key: do not use!!").decode()
EXAMPLE_SINK = "my-webhook"
EXAMPLE_RULE = "example"
EXAMPLE_SOURCE = "zendesk"
# The catalog's examples are of a JTL sync, the source that names its jobs (`job.name`).
CATALOG_SOURCE = "jtl"
CATALOG_JOB_NAME = "Amazon DE: orders"


def example_sink(url: str = "https://receiver.example.com/bridge") -> WebhookSink:
    return WebhookSink.model_validate(
        {"name": EXAMPLE_SINK, "kind": "webhook", "url": url, "secret": EXAMPLE_SECRET})


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """One type's sample event and what the pipeline would queue for it (or why not)."""

    entry: EventType
    # None for a silence reminder, which is about no one event.
    event: Event | None = None
    notification: Notification | None = None
    error: str | None = None

    @property
    def body(self) -> str:
        """The webhook body as sent (a JSON string); empty for a Slack sink or an error."""
        body = self.notification.payload.get("body") if self.notification else None
        return body if isinstance(body, str) else ""


def render_examples(
    sink: SinkBase,
    *,
    templates: str | Path | None = None,
    rule: str = EXAMPLE_RULE,
    source: str = EXAMPLE_SOURCE,
    types: Iterable[EventType] = ENTRIES,
    job_name: str | None = None,
) -> list[Example]:
    """A sample of each type rendered for `sink` by the real renderer, in catalog order.

    Templates come from `templates` and, for any name it lacks, from the bundled ones (as
    in the pipeline); without a folder, from the bundled templates only. `job_name` names
    the sample job (`job.name`), as a JTL sync's name does.
    """
    wanted = list(types)
    rules = {entry.name: Rule.model_validate(_rule_of(entry, rule, sink)) for entry in wanted
             if entry.name != REMINDER_TYPE}
    folder = bundled_templates() if templates is None else templates
    config = Config(bridge=BridgeSettings(templates=str(folder)), sinks=[sink],
                    rules=list(rules.values()))
    renderer = Renderer(config, strict=False)
    examples = []
    for entry in wanted:
        if entry.name == REMINDER_TYPE:
            examples.append(_reminder_example(entry, sink, renderer))
            continue
        if entry.name == GROUP_TYPE:
            examples.append(_group_example(entry, rules[entry.name], config, renderer, source,
                                           job_name))
            continue
        event = _named(sample_event(EventKind(entry.on), source=source), job_name)
        try:
            payload = renderer.render(rules[entry.name], event, sink)
        except TemplateError as exc:
            examples.append(Example(entry=entry, event=event, error=str(exc)))
            continue
        job = event.job
        examples.append(Example(entry=entry, event=event, notification=Notification(
            event_id=event.id, rule=rule, sink=sink.name, source=event.source,
            job_id=job.id if job else None, payload=payload, on=event.on,
            terminal=bool(job and job.state.terminal), state=str(job.state) if job else None,
        )))
    return examples


def catalog_examples() -> list[Example]:
    """The examples docs/webhooks.md shows: one of each type, of a named JTL sync, for the
    example webhook sink."""
    return render_examples(example_sink(), source=CATALOG_SOURCE, job_name=CATALOG_JOB_NAME)


def _named(event: Event, name: str | None) -> Event:
    if name is None or event.job is None:
        return event
    previous = event.previous and replace(event.previous, name=name)
    return replace(event, job=replace(event.job, name=name), previous=previous)


def _reminder_example(entry: EventType, sink: SinkBase, renderer: Renderer) -> Example:
    """A sink's daily reminder of two sample long silences, by the bundled template."""
    from bridge.reminders import payload
    from bridge.silence_reminder import DEFAULT_TEMPLATE, SilenceReminder, context
    from bridge.silence_reminder import notification as reminder_notification
    from bridge.silence_reminder import sample as sample_silences

    reminder = sink.silence_reminder or SilenceReminder(at=time(9, 0))
    shown = sink.model_copy(update={"silence_reminder": reminder})
    listed = sample_silences(FIXED_NOW)
    values = context(listed, sink=sink.name, reminder=reminder, now=FIXED_NOW)
    try:
        body = payload(renderer, shown, DEFAULT_TEMPLATE, values, listed)
    except TemplateError as exc:
        return Example(entry=entry, error=str(exc))
    return Example(entry=entry, notification=reminder_notification(
        sink.name, FIXED_NOW.date(), body))


def _rule_of(entry: EventType, rule: str, sink: SinkBase) -> dict[str, object]:
    if entry.name == GROUP_TYPE:
        # A digest of failures per source, as a grouped rule would send it.
        return {"name": rule, "on": "transition", "template": "transition.slack.j2",
                "notify": [sink.name], "group_by": ["source"]}
    return {"name": rule, "on": entry.on, "template": f"{entry.on}.slack.j2",
            "notify": [sink.name]}


def _group_example(entry: EventType, rule: Rule, config: Config, renderer: Renderer,
                   source: str, job_name: str | None) -> Example:
    group = sample_group(rule, source=source)
    # The first job named, the others not: the digest shows both kinds.
    head, *others = group.events
    group = replace(group, events=[replace(head, event=_named(head.event, job_name)), *others])
    rendered = Digests(config, renderer).render(group, FIXED_NOW)
    first = group.events[0].event
    if rendered.failures or not rendered.notifications:
        error = rendered.failures[0].error if rendered.failures else "no digest"
        return Example(entry=entry, event=first, error=error)
    return Example(entry=entry, event=first, notification=rendered.notifications[0])


def signed_request(
    example: Example, secret: str = EXAMPLE_SECRET, timestamp: int | None = None
) -> tuple[dict[str, str], str]:
    """The headers and body the webhook sink sends for `example` (at `timestamp`)."""
    if example.notification is None:
        raise ValueError(f"no example of {example.entry.name}: {example.error}")
    stamp = int(FIXED_NOW.timestamp()) if timestamp is None else timestamp
    body = example.body
    headers = {
        "content-type": "application/json",
        **signed_headers(decode_secret(secret), example.notification.delivery_id, stamp,
                         body.encode()),
    }
    return headers, body
