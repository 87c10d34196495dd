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
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from bridge.errors import StoreError
from bridge.secrets import hide_password
from bridge.store import schema, sql
from bridge.store.sqlbase import SqlStore

log = logging.getLogger(__name__)

# Any 64-bit constant: the advisory lock that serialises migrations across instances.
_MIGRATION_LOCK = 0x62726964676531


def _pg(query: str) -> str:
    return query.replace("?", "%s")


class PostgresStore(SqlStore):
    """The `Store` protocol over a PostgreSQL database (tables in the current search_path)."""

    claim_lock = " FOR UPDATE OF o SKIP LOCKED"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        keep_events: int = sql.EVENTS_KEEP,
    ):
        super().__init__(keep_events=keep_events)
        self.url = url
        self._where = hide_password(url)
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle: list[psycopg.AsyncConnection[Any]] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._all: set[psycopg.AsyncConnection[Any]] = set()

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._idle is not None:
            return
        self._idle = []
        self._slots = asyncio.Semaphore(self._pool_size)
        try:
            async with self._connection() as conn, conn.transaction():
                await self._migrate(conn)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._idle = None
        self._slots = None
        conns, self._all = self._all, set()
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
        # The semaphore bounds the pool; a slot frees whenever a call ends, even one whose
        # connection died, so a waiter never hangs on a connection that will not come back.
        slots, idle = self._slots, self._idle
        if slots is None or idle is None:
            raise StoreError(f"state store {self._where} is not open (or already closed)")
        async with slots:
            conn = idle.pop() if idle else await self._connect()
            try:
                yield conn
            except psycopg.Error as exc:
                raise StoreError(f"state store {self._where} failed: {exc}") from exc
            finally:
                if conn.closed or conn.broken or idle is not self._idle:
                    # A dead connection (server restart, network): forget it; the next call
                    # opens a new one.
                    self._all.discard(conn)
                else:
                    idle.append(conn)

    async def _rows(self, query: str, params: sql.Row = ()) -> list[Any]:
        async with self._connection() as conn:
            cur = await conn.execute(_pg(query), params)
            return await cur.fetchall()

    async def _write(self, query: str, params: sql.Row = ()) -> int:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(_pg(query), params)
            return int(cur.rowcount)

    async def _write_returning(self, query: str, params: sql.Row) -> list[Any]:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(_pg(query), params)
            return await cur.fetchall()

    async def _write_steps(self, steps: Iterable[sql.Step]) -> None:
        async with self._connection() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    for step in steps:
                        if isinstance(step, sql.Guarded):
                            await cur.executemany(_pg(step.query), step.rows)
                            sql.check_guard(step, cur.rowcount)
                        else:
                            await cur.executemany(_pg(step[0]), step[1])
            except (TypeError, ValueError) as exc:
                raise sql.serialise_failure(exc, self._where) from exc
