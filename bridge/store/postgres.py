"""The shared state store: PostgreSQL through psycopg 3's async connections.

Several bridge instances may point at one database: `claim_due` takes rows with
`FOR UPDATE SKIP LOCKED`, so two delivery workers never lease the same delivery, and
migrations run under an advisory lock so instances starting together do not race.
`psycopg_pool` lets pollers, delivery workers, the lease keeper and the HTTP API use the
store concurrently (it replaces a hand-written pool: it also reconnects in the background,
and discards a connection the server killed); each call runs in its own short transaction.
The schema is migrated on a connection of its own before the pool opens, so a refused
connection is reported with the server's own reason.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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

    claim_lock = " FOR UPDATE OF {alias} SKIP LOCKED"
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
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn = await self._connect()
        try:
            async with conn.transaction():
                await self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"state store {self._where} failed: {exc}") from exc
        finally:
            await conn.close()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, open=False,
            kwargs={"autocommit": True, "connect_timeout": self._connect_seconds},
            timeout=max(self._connect_timeout, 30.0), name="bridge-state")
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(
                f"cannot connect to the state store {self._where}: {exc}: check that the "
                "server is running and that the URL's host, port, user and database are right"
            ) from exc
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

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

    @property
    def _connect_seconds(self) -> int:
        return max(1, int(self._connect_timeout))

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=self._connect_seconds)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the state store {self._where}: {exc}: check that the "
                "server is running and that the URL's host, port, user and database are right"
            ) from exc

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        # The pool hands a connection back after the call, or discards it if it broke (a
        # server restart, the network) and opens a new one in the background.
        pool = self._pool
        if pool is None:
            raise StoreError(f"state store {self._where} is not open (or already closed)")
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(f"state store {self._where}: no connection free: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"state store {self._where} failed: {exc}") from exc

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

    async def _write_steps(self, steps: Iterable[sql.Step]) -> list[Any]:
        returned: list[Any] = []
        async with self._connection() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    for step in steps:
                        if isinstance(step, sql.Guarded):
                            await cur.executemany(_pg(step.query), step.rows)
                            sql.check_guard(step, cur.rowcount)
                        elif isinstance(step, sql.Returning):
                            await cur.execute(_pg(step.query), step.params)
                            returned.extend(await cur.fetchall())
                        else:
                            await cur.executemany(_pg(step[0]), step[1])
            except (TypeError, ValueError) as exc:
                raise sql.serialise_failure(exc, self._where) from exc
        return returned
