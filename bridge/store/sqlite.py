"""The embedded state store: one SQLite file (stdlib `sqlite3`), the default backend.

WAL mode (readers never block the writer), a busy timeout, and `synchronous=FULL` so a
committed poll survives even a power cut. Every call runs on one dedicated worker thread:
each is short local I/O, but an fsync or loading 100,000 jobs at start-up should not stall
the event loop, and a single thread serialises access to the one connection.

Every sqlite3 failure becomes a StoreError that names the file and says what to check.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import StoreError
from bridge.model import Delivery, DeliveryStatus, Event, SourceHealth, TrackedJob
from bridge.store import schema, sql
from bridge.store.base import MessageRef, OutboxStats, PollCommit, RuleMark

log = logging.getLogger(__name__)

T = TypeVar("T")
MEMORY = ":memory:"


class SqliteStore:
    """The `Store` protocol over one SQLite file (or `:memory:`)."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        keep_events: int = sql.EVENTS_KEEP,
    ):
        self.path = path
        self._busy_timeout = busy_timeout
        self._keep_events = keep_events
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-sqlite")
        try:
            await self._call(self._open)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    def _open(self, _: None) -> None:
        if self.path != MEMORY and not Path(self.path).parent.is_dir():
            raise StoreError(
                f"cannot open state store {self.path}: the directory "
                f"{Path(self.path).parent} does not exist: create it or change `state`"
            )
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        with self._transaction(conn):
            conn.execute(schema.VERSION_TABLE)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            if current > schema.LATEST:
                raise StoreError(schema.too_new(current, self.path))
            for version, statements in schema.pending(current, "sqlite"):
                log.info("migrating state store %s to schema version %d", self.path, version)
                for statement in statements:
                    conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    # --- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[[Any], T]) -> T:
        if self._executor is None:
            raise StoreError(f"state store {self.path} is not open (or already closed)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._guarded, fn))

    def _guarded(self, fn: Callable[[Any], T]) -> T:
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise explain(exc, self.path, self._busy_timeout) from exc

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so a transaction never fails half-way for
        # want of it (a DEFERRED one can, on upgrading from read to write).
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def _write(self, query: str, params: sql.Row = ()) -> int:
        def run(conn: sqlite3.Connection) -> int:
            with self._transaction(conn):
                return conn.execute(query, params).rowcount

        return await self._call(run)

    async def _rows(self, query: str, params: sql.Row = ()) -> list[Any]:
        return await self._call(lambda conn: conn.execute(query, params).fetchall())

    # --- jobs, health, events -------------------------------------------------------------

    async def load_jobs(self, source: str) -> dict[str, TrackedJob]:
        rows = await self._rows(sql.LOAD_JOBS, (source,))
        return {job.id: job for job in sql.jobs_from([r[0] for r in rows])}

    async def load_health(self, source: str) -> SourceHealth | None:
        rows = await self._rows(sql.LOAD_HEALTH, (source,))
        return sql.health_from(rows[0][0]) if rows else None

    async def commit_poll(self, commit: PollCommit) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                with self._transaction(conn):
                    for query, rows in sql.commit_steps(commit, self._keep_events):
                        conn.executemany(query, rows)
            except (TypeError, ValueError) as exc:
                raise sql.serialise_failure(exc, self.path) from exc

        await self._call(run)

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
            lock="", sink=sql.CLAIM_SINK_FILTER if sink is not None else ""
        )
        params: tuple[object, ...] = (sql.to_us(now + lease), sql.to_us(now))
        params += (sink, limit) if sink is not None else (limit,)

        def run(conn: sqlite3.Connection) -> list[Delivery]:
            with self._transaction(conn):
                return sql.sort_claimed(conn.execute(query, params).fetchall())

        return await self._call(run)

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
        def run(conn: sqlite3.Connection) -> OutboxStats:
            by_status = conn.execute(sql.STATS_BY_STATUS).fetchall()
            return sql.stats_from(by_status, conn.execute(sql.STATS_BY_SINK).fetchall())

        return await self._call(run)


def explain(exc: sqlite3.Error, path: str, busy_timeout: float) -> StoreError:
    """Turn a sqlite3 failure into what the operator should check."""
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        what = (
            "is not a readable SQLite database (corrupt, or another kind of file): move it "
            "aside to start with empty state, or restore it from a backup"
        )
    elif "locked" in text or "busy" in text:
        what = (
            f"is locked (waited {busy_timeout:g}s): another process is using it; run one bridge "
            "per file, or use PostgreSQL for several instances"
        )
    elif "unable to open" in text or "cannot open" in text:
        what = "cannot be opened: check that its directory exists and is writable by this user"
    elif "readonly" in text or "read-only" in text:
        what = "is read-only: check the permissions of the file and of its directory"
    elif "full" in text:
        what = "cannot grow: the disk is full; free some space"
    elif "disk i/o" in text:
        what = "hit a disk I/O error: check the disk and the file system"
    else:
        what = "failed"
    return StoreError(f"state store {path} {what} ({exc})")
