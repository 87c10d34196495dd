"""The flusher: due groups -> their digests in the outbox, one transaction per group.

Every `tick` it asks the store for the groups due by its clock (an indexed query: cheap
when none is) and, for each, renders the digest of its rule and writes it with
`Store.flush_group` (compare-and-set: of two instances, one writes the flush): the outbox
rows, the events shown, the next due time
(`group_interval` on). A due group with nothing new closes once every job in it has
finished (`finished`, the pipeline's view of the jobs); until then it is looked at again
one `group_interval` later. Groups live in the store, so
a restart flushes what was due while bridge was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from bridge.errors import StoreError
from bridge.groups.digest import Digests, group_jobs, outbox_rows
from bridge.groups.model import GroupFlush, OpenGroup
from bridge.metrics import Metrics
from bridge.periodic import Periodic
from bridge.store.base import StaleCommit, Store

log = logging.getLogger(__name__)

TICK = 1.0


class Flusher:
    def __init__(self, *, store: Store, digests: Digests, clock: Callable[[], datetime],
                 metrics: Metrics, on_queued: Callable[[], None] = lambda: None,
                 finished: Callable[[str, str], bool] = lambda source, job_id: True,
                 tick: float = TICK):
        self._store = store
        self._digests = digests
        self._clock = clock
        self._metrics = metrics
        self._on_queued = on_queued
        self._finished = finished
        # A failed tick leaves the groups in the store; the next one tries again.
        self._ticks = Periodic("groups:flush", tick, self.flush_due, retry_on=(StoreError,),
                               failed="flushing groups failed", log=log)
        # One flush at a time in this process: the loop and a caller (tests, shutdown).
        self._lock = asyncio.Lock()

    async def flush_due(self) -> int:
        """Flush or close every group due now; how many digests were queued."""
        async with self._lock:
            now = self._clock()
            queued = 0
            for group in await self._store.due_groups(now):
                queued += await self._flush(group, now)
        if queued:
            self._on_queued()
        return queued

    async def _flush(self, group: OpenGroup, now: datetime) -> int:
        rule = self._digests.rule(group.rule, group)
        shown = [event.id for event in group.new]
        if rule is None:
            # Nothing can render it any more; say so rather than let it vanish unnoticed.
            log.warning("group %s of rule %r: the config no longer has this rule with group_by;"
                        " closing it, %d event(s) not sent as a digest", group.id, group.rule,
                        len(shown))
            flush = GroupFlush(group_id=group.id, flushes=group.flushes, shown=shown)
        elif not shown:
            running = [j for j in group_jobs(group) if not self._finished(j.source, j.id)]
            flush = GroupFlush(group_id=group.id, flushes=group.flushes,
                               due_at=now + rule.group_interval if running else None)
        else:
            rendered = self._digests.render(group, now)
            for failure in rendered.failures:
                log.error("digest of group %s (rule %s) for sink %s failed: %s", failure.group,
                          failure.rule, failure.sink, failure.error)
                self._metrics.render_errors.labels(failure.rule).inc()
            # Each thread reply of a digest is an outbox row of its own (outbox_rows).
            rows = [row for n in rendered.notifications for row in outbox_rows(n)]
            flush = GroupFlush(group_id=group.id, flushes=group.flushes, notifications=rows,
                               shown=shown, due_at=now + rule.group_interval)
        try:
            await self._store.flush_group(flush, now)
        except StaleCommit as exc:
            # Another flusher (instance) moved it, or events joined a closing group: nothing
            # was written, and the group is read afresh at the next tick.
            log.debug("group %s: %s", group.id, exc)
            return 0
        if flush.due_at is None:
            log.debug("group %s of rule %s closed", group.id, group.rule)
        return sum(1 for n in flush.notifications if n.digest)

    def start(self) -> None:
        self._ticks.start()

    async def stop(self) -> None:
        await self._ticks.stop()
