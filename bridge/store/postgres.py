"""The shared state store: PostgreSQL through psycopg 3's async connections.

Several bridge instances may point at one database: `claim_due` takes rows with
`FOR UPDATE SKIP LOCKED`, so two delivery workers never lease the same delivery, and
migrations run under an advisory lock so instances starting together do not race.
A small pool of our own (no extra dependency) lets pollers, delivery workers and the HTTP
API use the store concurrently; each call runs in its own short transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bridge.errors import StoreError
from bridge.model import Delivery, DeliveryStatus, Event, SourceHealth, TrackedJob
from bridge.store import schema, sql
from bridge.store.base import MessageRef, OutboxStats, PollCommit, RuleMark

log = logging.getLogger(__name__)

# Any 64-bit constant: the advisory lock that serialises migrations across instances.
_MIGRATION_LOCK = 0x62726964676531


def _pg(query: str) -> str:
    return query.replace("?", "%s")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class PostgresStore:
    """The `Store` protocol over a PostgreSQL database (tables in the current search_path)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        keep_events: int = sql.EVENTS_KEEP,
    ):
        self.url = url
        self._where = redact(url)
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._keep_events = keep_events
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self._open_count = 0
        self._all: set[psycopg.AsyncConnection[Any]] = set()

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._idle is not None:
            return
        self._idle = asyncio.Queue()
        try:
            async with self._connection() as conn, conn.transaction():
                await self._migrate(conn)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._idle = None
        conns, self._all = self._all, set()
        self._open_count = 0
        for conn in conns:
            await conn.close()

    async def ping(self) -> None:
        await self._rows("SELECT 1")

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(schema.VERSION_TABLE)
        cur = await conn.execute("SELECT MAX(version) FROM schema_version")
        row = await cur.fetchone()
        current = int(row[0] or 0) if row else 0
        if current > schema.LATEST:
            raise StoreError(schema.too_new(current, self._where))
        for version, statements in schema.pending(current, "postgresql"):
            log.info("migrating state store %s to schema version %d", self._where, version)
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("DELETE FROM schema_version")
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    # --- plumbing -------------------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the state store {self._where}: {exc}: check that the "
                "server is running and that the URL's host, port, user and database are right"
            ) from exc
        self._all.add(conn)
        return conn

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        idle = self._idle
        if idle is None:
            raise StoreError(f"state store {self._where} is not open (or already closed)")
        if idle.empty() and self._open_count < self._pool_size:
            self._open_count += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._open_count -= 1
                raise
        else:
            conn = await idle.get()
        try:
            yield conn
        except psycopg.Error as exc:
            raise StoreError(f"state store {self._where} failed: {exc}") from exc
        finally:
            self._release(idle, conn)

    def _release(
        self, idle: asyncio.Queue[psycopg.AsyncConnection[Any]], conn: psycopg.AsyncConnection[Any]
    ) -> None:
        if conn.closed or conn.broken or idle is not self._idle:
            # A dead connection (server restart, network): forget it; the next call opens one.
            self._all.discard(conn)
            if idle is self._idle:
                self._open_count -= 1
            return
        idle.put_nowait(conn)

    async def _rows(self, query: str, params: sql.Row = ()) -> list[Any]:
        async with self._connection() as conn:
            cur = await conn.execute(_pg(query), params)
            return await cur.fetchall()

    async def _write(self, query: str, params: sql.Row = ()) -> int:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(_pg(query), params)
            return int(cur.rowcount)

    # --- jobs, health, events -------------------------------------------------------------

    async def load_jobs(self, source: str) -> dict[str, TrackedJob]:
        rows = await self._rows(sql.LOAD_JOBS, (source,))
        return {job.id: job for job in sql.jobs_from([r[0] for r in rows])}

    async def load_health(self, source: str) -> SourceHealth | None:
        rows = await self._rows(sql.LOAD_HEALTH, (source,))
        return sql.health_from(rows[0][0]) if rows else None

    async def commit_poll(self, commit: PollCommit) -> None:
        async with self._connection() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    for query, rows in sql.commit_steps(commit, self._keep_events):
                        await cur.executemany(_pg(query), rows)
            except (TypeError, ValueError) as exc:
                raise sql.serialise_failure(exc, self._where) from exc

    async def list_jobs(
        self, source: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[TrackedJob]:
        rows = await self._rows(*sql.list_jobs_query(source, state, limit))
        return sql.jobs_from([r[0] for r in rows])

    async def list_health(self) -> list[SourceHealth]:
        return [sql.health_from(r[0]) for r in await self._rows(sql.LIST_HEALTH)]

    async def recent_events(
        self, limit: int = 100, before: int | None = None, source: str | None = None
    ) -> list[tuple[int, Event]]:
        rows = await self._rows(*sql.recent_events_query(limit, before, source))
        return [sql.event_from(r) for r in rows]

    # --- watches, rule marks, message refs ------------------------------------------------

    async def add_watch(self, source: str, job_id: str) -> bool:
        now = sql.to_us(datetime.now(UTC))
        return await self._write(sql.ADD_WATCH, (source, job_id, now)) > 0

    async def remove_watch(self, source: str, job_id: str) -> bool:
        return await self._write(sql.REMOVE_WATCH, (source, job_id)) > 0

    async def list_watches(self, source: str) -> list[str]:
        return [r[0] for r in await self._rows(sql.LIST_WATCHES, (source,))]

    async def load_rule_marks(self) -> list[RuleMark]:
        return [sql.mark_from(r) for r in await self._rows(sql.LOAD_MARKS)]

    async def get_message_ref(self, sink: str, source: str, job_id: str) -> MessageRef | None:
        rows = await self._rows(sql.GET_REF, (sink, source, job_id))
        return MessageRef(channel=rows[0][0], ts=rows[0][1]) if rows else None

    async def set_message_ref(self, sink: str, source: str, job_id: str, ref: MessageRef) -> None:
        await self._write(sql.SET_REF, (sink, source, job_id, ref.channel, ref.ts))

    # --- outbox ---------------------------------------------------------------------------

    async def claim_due(
        self, now: datetime, limit: int, lease: timedelta, sink: str | None = None
    ) -> list[Delivery]:
        query = sql.CLAIM_DUE.format(
            lock=" FOR UPDATE SKIP LOCKED", sink=sql.CLAIM_SINK_FILTER if sink is not None else ""
        )
        params: tuple[object, ...] = (sql.to_us(now + lease), sql.to_us(now))
        params += (sink, limit) if sink is not None else (limit,)
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(_pg(query), params)
            return sql.sort_claimed(await cur.fetchall())

    async def mark_delivered(self, delivery_id: str, at: datetime) -> None:
        await self._write(sql.MARK_DELIVERED, (sql.to_us(at), delivery_id))

    async def mark_retry(self, delivery_id: str, error: str, next_attempt_at: datetime) -> None:
        await self._write(sql.MARK_RETRY, (error, sql.to_us(next_attempt_at), delivery_id))

    async def mark_dead(self, delivery_id: str, error: str, at: datetime) -> None:
        await self._write(sql.MARK_DEAD, (error, sql.to_us(at), delivery_id))

    async def release_claims(self) -> None:
        await self._write(sql.RELEASE_CLAIMS)

    async def list_outbox(
        self, status: DeliveryStatus | None = None, limit: int = 200
    ) -> list[Delivery]:
        return [
            sql.delivery_from(r) for r in await self._rows(*sql.list_outbox_query(status, limit))
        ]

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = await self._rows(sql.GET_DELIVERY, (delivery_id,))
        return sql.delivery_from(rows[0]) if rows else None

    async def retry_deliveries(self, delivery_id: str | None, now: datetime) -> int:
        if delivery_id is None:
            return await self._write(sql.RETRY_DEAD, (sql.to_us(now),))
        return await self._write(sql.RETRY_ONE, (sql.to_us(now), delivery_id))

    async def drop_deliveries(self, delivery_id: str | None) -> int:
        if delivery_id is None:
            return await self._write(sql.DROP_DEAD)
        return await self._write(sql.DROP_ONE, (delivery_id,))

    async def outbox_stats(self) -> OutboxStats:
        async with self._connection() as conn:
            by_status = await (await conn.execute(sql.STATS_BY_STATUS)).fetchall()
            by_sink = await (await conn.execute(sql.STATS_BY_SINK)).fetchall()
        return sql.stats_from(by_status, by_sink)
