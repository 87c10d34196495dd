"""Silences in the SQL stores (table `silences`, bridge.store.schema) and silenced rows.

One row per silence: the columns queries filter on (start, end, how it ended) beside the
matchers, comment and author as JSON. Every instance reads the same table, so a silence
made through one instance's API mutes the notifications of all of them; `active_silences`
is asked once per poll batch that has something to decide (bridge.stages.silence).

Silenced notifications are outbox rows with status `silenced` (never claimed, since claims
take `pending` rows only), finished at once and pruned like delivered ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from bridge.model import Notification
from bridge.silences import EndReason, Silence
from bridge.store import coalesce, sql
from bridge.store.base import StaleCommit
from bridge.store.cas import Guarded
from bridge.store.primitives import SqlPrimitives
from bridge.store.shared_sql import CLAIM_MESSAGE

COLS = "id, starts_us, ends_us, until_resolved, ended, created_us, data"
INSERT = f"INSERT INTO silences ({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
ACTIVE = (f"SELECT {COLS} FROM silences WHERE starts_us <= ? AND (ends_us IS NULL OR ends_us > ?) "
          "ORDER BY created_us, id")
CURRENT = (f"SELECT {COLS} FROM silences WHERE ends_us IS NULL OR ends_us > ? "
           "ORDER BY created_us DESC, id")
ALL = f"SELECT {COLS} FROM silences ORDER BY created_us DESC, id LIMIT ?"
GET = f"SELECT {COLS} FROM silences WHERE id = ?"
EXPIRE = ("UPDATE silences SET ends_us = ?, ended = 'expired' "
          "WHERE id = ? AND (ends_us IS NULL OR ends_us > ?)")
# until_resolved: ends when its job succeeds (committed with the poll that saw it).
RESOLVE = ("UPDATE silences SET ends_us = ?, ended = 'resolved' "
           "WHERE id = ? AND (ends_us IS NULL OR ends_us > ?)")
INSERT_SILENCED = (
    "INSERT INTO outbox (id, sink, source, job_id, status, created_us, finished_us, "
    "priority, data) VALUES (?, ?, ?, ?, 'silenced', ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
PRUNE_SILENCED = "DELETE FROM outbox WHERE status = 'silenced' AND finished_us < ?"
# The silenced rows a silence muted (their reason is `Silence.describe()`, in the row's JSON).
# The reason is "silence ID" or "silence ID (comment)": the id is followed by `"` or ` (`.
SILENCED_BY = ("SELECT COUNT(*) FROM outbox WHERE status = 'silenced' "
               "AND (data LIKE ? ESCAPE '\\' OR data LIKE ? ESCAPE '\\')")


def row_of(silence: Silence) -> sql.Row:
    data = {"matchers": dict(silence.matchers), "comment": silence.comment,
            "author": silence.author}
    return (silence.id, sql.to_us(silence.starts),
            sql.to_us(silence.ends) if silence.ends else None, int(silence.until_resolved),
            str(silence.ended) if silence.ended else None, sql.to_us(silence.created_at),
            sql.dumps(data))


def silence_from(row: sql.Row) -> Silence:
    silence_id, starts, ends, until_resolved, ended, created, data = row
    extra = json.loads(data)
    start = sql.from_us(starts)
    assert start is not None
    return Silence(id=silence_id, matchers=extra["matchers"], starts=start,
                   ends=sql.from_us(ends), until_resolved=bool(until_resolved),
                   comment=extra.get("comment", ""), author=extra.get("author", ""),
                   created_at=sql.from_us(created) or start,
                   ended=EndReason(ended) if ended else None)


def silenced_rows(notifications: Sequence[Notification], at: datetime
                  ) -> Iterable[sql.Row]:
    at_us = sql.to_us(at)
    return ((n.delivery_id, n.sink, n.source, n.job_id, at_us + i, at_us, n.priority.rank,
             sql.dumps(n.as_dict())) for i, n in enumerate(notifications))


def commit_steps(notifications: Sequence[Notification], ended: Sequence[str],
                 at: datetime) -> Iterable[sql.Step]:
    """The silence part of one commit_poll: silenced rows, resolved silences."""
    if notifications:
        yield INSERT_SILENCED, silenced_rows(notifications, at)
        yield PRUNE_SILENCED, [(sql.to_us(at - sql.DELIVERED_KEEP),)]
    if ended:
        at_us = sql.to_us(at)
        yield RESOLVE, [(at_us, silence_id, at_us) for silence_id in ended]


class SilenceQueries(SqlPrimitives):
    """The silence methods of the `Store` protocol, over a SQL store's primitives."""

    async def add_silence(self, silence: Silence) -> None:
        await self._write(INSERT, row_of(silence))

    async def get_silence(self, silence_id: str) -> Silence | None:
        rows = await self._rows(GET, (silence_id,))
        return silence_from(rows[0]) if rows else None

    async def active_silences(self, now: datetime) -> list[Silence]:
        now_us = sql.to_us(now)
        return [silence_from(r) for r in await self._rows(ACTIVE, (now_us, now_us))]

    async def list_silences(self, now: datetime, *, expired: bool = False,
                            limit: int = 500) -> list[Silence]:
        """Active and pending silences, newest first; with `expired`, the ended ones too."""
        if expired:
            return [silence_from(r) for r in await self._rows(ALL, (limit,))]
        return [silence_from(r) for r in await self._rows(CURRENT, (sql.to_us(now),))]

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End a silence now; False when there is none of that id that has not ended."""
        now_us = sql.to_us(now)
        return await self._write(EXPIRE, (now_us, silence_id, now_us)) > 0

    async def silenced_count(self, silence_id: str) -> int:
        """How many notifications the outbox records as muted by this silence."""
        literal = silence_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        head = f'%"silenced":"silence {literal}'
        rows = await self._rows(SILENCED_BY, (head + '"%', head + " (%"))
        return int(rows[0][0]) if rows else 0

    async def queue_once(self, scope: str, key: str, notifications: Sequence[Notification],
                         at: datetime, expires: datetime) -> bool:
        """Queue `notifications` (none: only claim) if `key` of `scope` was not claimed
        before (until `expires`), in one transaction: the claim and the rows are written
        together or not at all, so of instances racing for it (or a restart after a crash)
        exactly one queues them. False: claimed already, nothing written."""
        at_us = sql.to_us(at)
        claim = Guarded(CLAIM_MESSAGE, [(scope, key, sql.to_us(expires), at_us)],
                        f"{scope} {key} was claimed already")
        rows = [(n.delivery_id, n.sink, n.source, n.job_id, at_us + i, at_us, n.priority.rank,
                 sql.dumps(n.as_dict()), coalesce.mergeable(n))
                for i, n in enumerate(notifications)]
        try:
            await self._write_steps([claim, (sql.INSERT_OUTBOX, rows)])
        except StaleCommit:
            return False
        return True
