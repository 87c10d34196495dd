"""`bridge notify-test SINK [--all-types | --rule NAME]`: send sample notifications to one
sink, now.

With `--rule NAME`, the rule's own template renders the sample event of the rule's kind
(the one `bridge check` renders) for the sink, as the pipeline would.

One sample event (`job.transition`), or with `--all-types` one of every type of the webhook
catalog, is rendered by the real renderer (`bridge.webhooks.examples`) with the templates
`<on>.slack.j2` (the config's folder first, then the bundled ones) and sent by the sink's
real sender from the sink registry: a webhook is signed as usual, a Slack sink posts (or, in
`update` mode, edits one message). It prints, per type, the HTTP status the sink answered
and whether that counts as delivered. Nothing goes through the outbox or the state store: a
failure is reported, never retried, and each send has a fresh `webhook-id`.

The stages are apart so that `--rule` (render with a rule of the config instead of the
shipped templates) is a new `plan`, not a new command: `plan` picks the examples, `send`
delivers them, `report` prints.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TextIO

import aiohttp

from bridge.checks.samples import sample_event, source_for
from bridge.config.schema import Config, SinkBase
from bridge.errors import BridgeError, DeliveryError, TemplateError
from bridge.model import Delivery, Notification
from bridge.render import Renderer
from bridge.sinks import build_sink
from bridge.store import open_store
from bridge.webhooks.catalog import CATALOG, ENTRIES
from bridge.webhooks.examples import Example, render_examples

RULE = "notify-test"
# Without --all-types: the type most receivers act on.
DEFAULT_TYPE = "job.transition"


class UnknownSink(BridgeError):
    """`bridge notify-test` named a sink the config does not have."""


class UnknownRule(BridgeError):
    """`bridge notify-test --rule` named a rule the config does not have."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What one example got: the status the sink answered, and the error when not delivered."""

    type: str
    delivery_id: str | None
    status: int | None
    error: str | None = None
    retryable: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


def plan(config: Config, sink_name: str, *, all_types: bool,
         rule: str | None = None) -> tuple[SinkBase, list[Example]]:
    """The sink and the examples to send it, rendered as the pipeline would."""
    try:
        sink = config.sink(sink_name)
    except KeyError:
        names = ", ".join(s.name for s in config.sinks) or "none"
        raise UnknownSink(f"no sink {sink_name!r} in {config.path or 'the config'} "
                          f"(sinks: {names})") from None
    if rule is not None:
        return sink, [_rule_example(config, sink, rule)]
    types = list(ENTRIES) if all_types else [CATALOG[DEFAULT_TYPE]]
    # The config's folder first, then the bundled templates: a `body` template and the
    # user's own `<on>.slack.j2` are used as the pipeline would use them.
    source = config.sources[0].name if config.sources else "example"
    return sink, render_examples(sink, templates=config.bridge.templates, rule=RULE, source=source,
                                 types=types)


def _rule_example(config: Config, sink: SinkBase, name: str) -> Example:
    rule = next((r for r in config.rules if r.name == name), None)
    if rule is None:
        names = ", ".join(r.name for r in config.rules) or "none"
        raise UnknownRule(f"no rule {name!r} in {config.path or 'the config'} (rules: {names})")
    event = sample_event(rule.on, source=source_for(config, rule), rule=rule)
    entry = next(e for e in ENTRIES if e.on == rule.on)
    try:
        payload = Renderer(config, strict=False).render(rule, event, sink)
    except TemplateError as exc:
        return Example(entry=entry, event=event, error=str(exc))
    job = event.job
    return Example(entry=entry, event=event, notification=Notification(
        event_id=event.id, rule=rule.name, sink=sink.name, source=event.source,
        job_id=job.id if job else None, payload=payload, on=event.on,
        terminal=bool(job and job.state.terminal), state=str(job.state) if job else None))


async def send(sink_config: SinkBase, examples: Sequence[Example]) -> list[Answer]:
    """Send each example through the sink's real sender; the answers in order."""
    statuses: list[int] = []

    async def on_end(session: object, context: object,
                     params: aiohttp.TraceRequestEndParams) -> None:
        statuses.append(params.response.status)

    trace = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
    trace.on_request_end.append(on_end)
    answers: list[Answer] = []
    with tempfile.TemporaryDirectory(prefix="bridge-notify-test-") as folder:
        # Slack's update mode remembers message ids; keep them away from the real state.
        store = open_store(f"sqlite:///{Path(folder) / 'state.db'}")
        await store.open()
        try:
            async with aiohttp.ClientSession(trace_configs=[trace]) as session:
                sink = build_sink(sink_config, session, store)
                try:
                    for example in examples:
                        answers.append(await _send_one(sink.send, example, statuses))
                finally:
                    await sink.aclose()
        finally:
            await store.close()
    return answers


async def _send_one(
    deliver: Callable[[Delivery], Awaitable[None]], example: Example, statuses: list[int]
) -> Answer:
    name = example.entry.name
    if example.notification is None:
        return Answer(type=name, delivery_id=None, status=None,
                      error=f"not rendered: {example.error}")
    # A fresh id per send, not the notification's stable one: every test is a new delivery
    # (never retried), and a receiver de-duplicating on webhook-id would drop a second test.
    delivery = Delivery(id=f"msg_{uuid.uuid4().hex[:24]}", notification=example.notification,
                        created_at=datetime.now(UTC))
    seen = len(statuses)
    error: DeliveryError | None = None
    try:
        await deliver(delivery)
    except DeliveryError as exc:
        error = exc
    status = statuses[-1] if len(statuses) > seen else None
    # Nothing was queued: the outbox's "then `bridge outbox retry`" advice does not apply.
    said = str(error).split("; fix the sink's config")[0] if error else None
    return Answer(type=name, delivery_id=delivery.id, status=status, error=said,
                  retryable=bool(error and error.retryable))


def report(sink: SinkBase, answers: Sequence[Answer], out: TextIO) -> int:
    """One line per type; 0 when every example was delivered, else 1."""
    out.write(f"notify-test: {len(answers)} sample(s) to sink {sink.name} ({sink.kind})\n")
    width = max((len(a.type) for a in answers), default=0)
    for answer in answers:
        status = str(answer.status) if answer.status is not None else "---"
        if answer.delivered:
            what = f"delivered  webhook-id {answer.delivery_id}"
        else:
            kind = "retryable" if answer.retryable else "permanent"
            what = f"FAILED ({kind}): {answer.error}"
        out.write(f"  {answer.type:<{width}}  {status}  {what}\n")
    failed = sum(1 for a in answers if not a.delivered)
    out.write(f"{len(answers) - failed} delivered, {failed} failed\n")
    return 1 if failed else 0


async def notify_test(config: Config, sink_name: str, *, all_types: bool, out: TextIO,
                      rule: str | None = None) -> int:
    sink, examples = plan(config, sink_name, all_types=all_types, rule=rule)
    if rule is not None:
        out.write(f"rule {rule}: its template with a sample {examples[0].entry.on} event\n")
    return report(sink, await send(sink, examples), out)
