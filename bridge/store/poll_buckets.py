"""Poll outcomes per source and 5-minute bucket (table `poll_buckets`), for the dashboard's
polls/errors chart (bridge.server.timeline_polls).

One row per (source, bucket): how many polls answered, how many failed, and the last
failure's text. Counts are added with an upsert (`ok = ok + excluded.ok`), so every instance
on a shared store adds its own polls to the same rows and the chart shows them all; a
restart loses nothing already written. Rows older than `KEEP` are pruned by the writer
(bridge.poll_counts), at most once an hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.store import sql
from bridge.store.primitives import SqlPrimitives

BUCKET = timedelta(minutes=5)
# The longest range the timeline offers is 7 days; a day more, so its first column is full.
KEEP = timedelta(days=8)
# A failure's text is kept for the chart's tooltip, not as a log: a bounded prefix.
ERROR_CHARS = 300

_BUCKET_US = int(BUCKET.total_seconds() * 1_000_000)
UPSERT = (
    "INSERT INTO poll_buckets (source, bucket_us, ok, errors, last_error) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, bucket_us) DO UPDATE SET "
    "ok = poll_buckets.ok + excluded.ok, errors = poll_buckets.errors + excluded.errors, "
    "last_error = COALESCE(excluded.last_error, poll_buckets.last_error)"
)
PRUNE = "DELETE FROM poll_buckets WHERE bucket_us < ?"
_COLS = "source, bucket_us, ok, errors, last_error"
SINCE = f"SELECT {_COLS} FROM poll_buckets WHERE bucket_us >= ? ORDER BY source, bucket_us"
SINCE_OF = (f"SELECT {_COLS} FROM poll_buckets WHERE source = ? AND bucket_us >= ? "
            "ORDER BY bucket_us")


@dataclass(frozen=True, slots=True, kw_only=True)
class PollBucket:
    """The polls of one source that started in [start, start + BUCKET)."""

    source: str
    start: datetime
    ok: int = 0
    errors: int = 0
    last_error: str | None = None

    @property
    def polls(self) -> int:
        return self.ok + self.errors


def bucket_of(at: datetime) -> datetime:
    """The start of the bucket `at` falls in (buckets are aligned to the epoch, in UTC)."""
    us = sql.to_us(at)
    start = sql.from_us(us - us % _BUCKET_US)
    assert start is not None
    return start


def _row(bucket: PollBucket) -> sql.Row:
    error = bucket.last_error[:ERROR_CHARS] if bucket.last_error else None
    return (bucket.source, sql.to_us(bucket_of(bucket.start)), bucket.ok, bucket.errors, error)


def _bucket(row: sql.Row) -> PollBucket:
    source, start_us, ok, errors, last_error = row
    start = sql.from_us(start_us)
    assert start is not None
    return PollBucket(source=source, start=start, ok=int(ok), errors=int(errors),
                      last_error=last_error)


class PollBucketQueries(SqlPrimitives):
    """The poll-bucket methods of the `Store` protocol, over a SQL store's primitives."""

    async def add_poll_counts(self, counts: Sequence[PollBucket],
                              prune_before: datetime | None = None) -> None:
        """Add the counts to their buckets (one transaction); with `prune_before`, drop the
        buckets older than it in the same transaction."""
        # In key order: two instances adding to the same rows take their locks alike.
        rows = sorted((_row(b) for b in counts), key=lambda r: (r[0], r[1]))
        steps: list[sql.Step] = [(UPSERT, rows)] if rows else []
        if prune_before is not None:
            steps.append((PRUNE, [(sql.to_us(prune_before),)]))
        if steps:
            await self._write_steps(steps)

    async def poll_buckets(self, since: datetime, source: str | None = None
                           ) -> list[PollBucket]:
        """The buckets from the one holding `since` on, per source oldest first."""
        since_us = sql.to_us(bucket_of(since))
        if source is None:
            return [_bucket(r) for r in await self._rows(SINCE, (since_us,))]
        return [_bucket(r) for r in await self._rows(SINCE_OF, (source, since_us))]
