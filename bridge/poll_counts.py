"""Counts each poll's outcome in memory and writes the counts to the store in batches.

The dashboard's polls/errors chart reads them back from the store (bridge.store.poll_buckets),
so it survives restarts and, on a shared store, shows every instance's polls. A poll costs a
dict update here; the store sees one transaction every `FLUSH_SECONDS` (and one more at
shutdown, and before the dashboard reads), however many sources poll. A failed write keeps
the counts for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.periodic import Periodic
from bridge.store.base import Store
from bridge.store.poll_buckets import KEEP, PollBucket, bucket_of

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0
PRUNE_EVERY = timedelta(hours=1)


@dataclass(slots=True)
class _Pending:
    ok: int = 0
    errors: int = 0
    last_error: str | None = None


class PollCounter:
    def __init__(self, store: Store, clock: Callable[[], datetime]):
        self._store = store
        self._clock = clock
        self._pending: dict[tuple[str, datetime], _Pending] = {}
        self._lock = asyncio.Lock()
        self._pruned_at: datetime | None = None
        # A store that is down fails a write: health says so, and the counts wait for the next.
        self._ticks = Periodic("poll-counts", FLUSH_SECONDS, self.flush, retry_on=(Exception,),
                               failed="could not write poll counts (kept for the next try)",
                               log=log, wait_first=True)

    def add(self, source: str, at: datetime, error: str | None = None) -> None:
        """Count one poll of `source` at `at`: answered (`error` None) or failed."""
        counts = self._pending.setdefault((source, bucket_of(at)), _Pending())
        if error is None:
            counts.ok += 1
        else:
            counts.errors += 1
            counts.last_error = error

    async def flush(self) -> None:
        """Write what was counted since the last flush (one transaction)."""
        async with self._lock:
            taken, self._pending = self._pending, {}
            now = self._clock()
            prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY
            if not taken and not prune:
                return
            counts = [PollBucket(source=source, start=start, ok=c.ok, errors=c.errors,
                                 last_error=c.last_error)
                      for (source, start), c in taken.items()]
            try:
                await self._store.add_poll_counts(counts, now - KEEP if prune else None)
            except Exception:
                self._restore(counts)
                raise
            if prune:
                self._pruned_at = now

    def _restore(self, counts: list[PollBucket]) -> None:
        """Put counts that could not be written back, under any counted since."""
        for bucket in counts:
            again = self._pending.setdefault((bucket.source, bucket.start), _Pending())
            again.ok += bucket.ok
            again.errors += bucket.errors
            again.last_error = again.last_error or bucket.last_error

    def start(self) -> None:
        self._ticks.start()

    async def stop(self) -> None:
        """Stop the loop and write the rest (once; a store that is down loses them)."""
        await self._ticks.stop()
        try:
            await self.flush()
        except Exception as exc:
            log.warning("could not write the last poll counts: %s", exc)

