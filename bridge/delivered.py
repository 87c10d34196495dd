"""Recording sent deliveries as delivered, in the background (bridge.deliver's workers).

Sending never waits on the store: a sent row is queued here, and one task writes what has
gathered while the last write ran, in one transaction. Until recorded a row stays leased
(its job's later rows wait); a crash before that only means it is sent once more, with the
same webhook-id (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bridge.errors import StoreError
from bridge.logs import for_sink
from bridge.metrics import Metrics
from bridge.model import Delivery
from bridge.store.base import Store

log = logging.getLogger("bridge.deliver")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    sink: str
    delivery: Delivery
    at: datetime


class Recorder:
    """Records sent deliveries as delivered, in the background, so sending never waits on
    the store: while one write runs the next deliveries gather, and the store takes them in
    one transaction (a commit per row would cap delivery at the disk's fsync rate). Until
    recorded a row stays leased; a crash before that only means it is sent once more, with
    the same webhook-id (at-least-once)."""

    def __init__(self, store: Store, metrics: Metrics,
                 recorded: Callable[[set[str]], None] = lambda sinks: None):
        self._store = store
        self._metrics = metrics
        # Told which sinks had rows recorded: their jobs' next rows are claimable now.
        self._recorded = recorded
        self._queue: list[Sent] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return bool(self._queue) or (self._task is not None and not self._task.done())

    def add(self, sent: Sent) -> None:
        self._queue.append(sent)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="deliver:record")

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._write(batch)
            except StoreError as exc:
                log.error("could not record %d deliveries: %s; they will be sent again",
                          len(batch), exc)
                continue
            self._count(batch)
            self._recorded({sent.sink for sent in batch})

    def _count(self, batch: list[Sent]) -> None:
        # A metric's child looked up once per sink, not per row: labels() costs more than
        # the increment, and a batch is hundreds of rows to one or two sinks.
        by_sink: dict[str, list[Sent]] = {}
        for sent in batch:
            by_sink.setdefault(sent.sink, []).append(sent)
        debug = log.isEnabledFor(logging.DEBUG)
        for sink, rows in by_sink.items():
            self._metrics.deliveries.labels(sink).inc(len(rows))
            latency = self._metrics.delivery_latency.labels(sink)
            for sent in rows:
                latency.observe(max(0.0, (sent.at - sent.delivery.created_at).total_seconds()))
                # Debug, not info: a line per notification was a tenth of the CPU of the
                # push -> webhook path; bridge_deliveries_total counts them, failures warn.
                if debug:
                    for_sink(log, sink).debug("delivered %s to %s (attempt %d)",
                                              sent.delivery.id, sink, sent.delivery.attempts + 1)

    async def _write(self, batch: list[Sent]) -> None:
        await self._store.mark_delivered_many([(s.delivery.id, s.at) for s in batch])
