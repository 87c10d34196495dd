"""The daily reminders of long silences: each sink's `silence_reminder`, queued once a day.

Every `tick` the loop asks, per sink with a reminder, whether that sink's day is due
(bridge.silence_reminder: from `at` in its timezone until midnight) and not yet decided by
this process. A due day reads the silences in force, keeps the long ones with how many
notifications each muted, renders the sink's template and writes the message with
`Store.queue_once`, which claims (sink, day) in the store in the same transaction: of
several instances, or a restart after a crash, exactly one queues it. When no silence is
long the day is claimed with nothing queued, so a silence turning long later that day does
not bring a second, late reminder. From there the outbox delivers it like any notification.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from bridge.config.schema import Config, SinkBase
from bridge.errors import StoreError, TemplateError
from bridge.metrics import Metrics
from bridge.periodic import Periodic
from bridge.render import Renderer
from bridge.resources import bundled_templates
from bridge.silence_reminder import (
    DEFAULT_TEMPLATE,
    RULE,
    SOURCE,
    LongSilence,
    SilenceReminder,
    context,
    dump,
    long_silence,
    notification,
    stamp,
)
from bridge.silences import Silence
from bridge.sinks.base import PayloadShape
from bridge.store.base import Store
from bridge.webhooks import catalog

log = logging.getLogger(__name__)

TICK = 1.0
# How long a day's claim is kept: past the end of that local day in any zone.
CLAIM_KEEP = timedelta(days=2)


def scope(sink: str) -> str:
    return f"silence-reminder:{sink}"


class Reminders:
    def __init__(self, *, config: Config, store: Store, renderer: Renderer,
                 clock: Callable[[], datetime], metrics: Metrics,
                 on_queued: Callable[[], None] = lambda: None, tick: float = TICK):
        self._config = config
        self._sinks = [s for s in config.sinks if s.silence_reminder is not None]
        self._fallback: Renderer | None = None
        self._zone = config.bridge.timezone
        self._store = store
        self._renderer = renderer
        self._clock = clock
        self._metrics = metrics
        self._on_queued = on_queued
        # Nothing is claimed by a failed tick: the next one decides the day again.
        self._ticks = Periodic("silence-reminders", tick, self.remind_due,
                               retry_on=(StoreError, TemplateError),
                               failed="silence reminders failed", log=log)
        # The last day each sink's reminder was decided here: no store query until the next.
        self._decided: dict[str, date] = {}
        self._lock = asyncio.Lock()

    async def remind_due(self) -> int:
        """Decide every sink's reminder that is due now; how many messages were queued."""
        async with self._lock:
            now = self._clock()
            due = [(sink, day) for sink in self._sinks
                   if (day := _reminder(sink).due_day(now, self._zone)) is not None
                   and self._decided.get(sink.name) != day]
            if not due:
                return 0
            silences = await self._store.active_silences(now)
            counts: dict[str, int] = {}
            queued = 0
            for sink, day in due:
                queued += await self._remind(sink, day, silences, counts, now)
        if queued:
            self._on_queued()
        return queued

    async def _remind(self, sink: SinkBase, day: date, silences: Sequence[Silence],
                      counts: dict[str, int], now: datetime) -> int:
        reminder = _reminder(sink)
        listed: list[LongSilence] = []
        for silence in silences:
            if reminder.is_long(silence, now):
                if silence.id not in counts:
                    counts[silence.id] = await self._store.silenced_count(silence.id)
                listed.append(long_silence(silence, counts[silence.id], now))
        queued = [notification(sink.name, day, self._payload(sink, reminder, listed, now))
                  ] if listed else []
        won = await self._store.queue_once(scope(sink.name), day.isoformat(), queued, now,
                                           now + CLAIM_KEEP)
        self._decided[sink.name] = day
        if not won:
            log.debug("silence reminder of sink %s for %s: decided already", sink.name, day)
            return 0
        if queued:
            log.info("silence reminder for sink %s queued: %d long silence(s)", sink.name,
                     len(listed))
        return len(queued)

    def _payload(self, sink: SinkBase, reminder: SilenceReminder,
                 listed: Sequence[LongSilence], now: datetime) -> dict[str, Any]:
        values = context(listed, sink=sink.name, reminder=reminder, now=now)
        try:
            return payload(self._renderer, sink, reminder.template, values, listed)
        except TemplateError as exc:
            # A broken template costs the reminder its looks, never the reminder.
            log.error("silence reminder template %s for sink %s failed: %s; sending the "
                      "bundled one", reminder.template, sink.name, exc)
            self._metrics.render_errors.labels(RULE).inc()
            return payload(self._bundled(), sink, DEFAULT_TEMPLATE, values, listed)

    def _bundled(self) -> Renderer:
        """A renderer of the bundled templates only (made on its first use)."""
        if self._fallback is None:
            bundled = self._config.bridge.model_copy(
                update={"templates": str(bundled_templates())})
            self._fallback = Renderer(self._config.model_copy(
                update={"bridge": bundled, "rules": []}), strict=False)
        return self._fallback

    def start(self) -> None:
        if self._sinks:
            self._ticks.start()

    async def stop(self) -> None:
        await self._ticks.stop()


def _reminder(sink: SinkBase) -> SilenceReminder:
    reminder = sink.silence_reminder
    assert reminder is not None  # only sinks with one are kept
    return reminder


def payload(renderer: Renderer, sink: SinkBase, template: str, values: dict[str, Any],
            listed: Sequence[LongSilence]) -> dict[str, Any]:
    """The reminder's payload for `sink`: Slack text (or blocks), or text and the
    `silence.reminder` webhook body. Raises TemplateError."""
    shape = renderer.shape(sink)
    if shape is PayloadShape.SLACK:
        return renderer.slack(template, values)
    text = renderer.text(template, values)
    if shape is not PayloadShape.WEBHOOK:
        return {"text": text}
    body_template = sink.body_template()
    if body_template:
        # A body template written for single events (PagerDuty's) reads the names an event
        # has: `on` is "silence_reminder", the job and transition names are null.
        return {"text": text, "body": renderer.body(body_template, {
            **_EVENT_NAMES, **values, "text": text, "sink": sink.name, "source": SOURCE})}
    reminder = _reminder(sink)
    body = catalog.build_reminder({
        "sink": sink.name, "text": text,
        "longer_than": int(reminder.longer_than.total_seconds()),
        "silences": [s.body() for s in listed]}, stamp(values["at"]))
    return {"text": text, "body": dump(body)}


_EVENT_NAMES: dict[str, Any] = {
    "on": "silence_reminder", "event": None, "job": None, "previous": None, "from": None,
    "to": None, "reason": None, "duration": None, "first_seen": None}
