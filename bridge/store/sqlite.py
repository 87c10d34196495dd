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
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import StoreError
from bridge.store import schema, sql
from bridge.store.sqlbase import SqlStore

log = logging.getLogger(__name__)

T = TypeVar("T")
MEMORY = ":memory:"


class SqliteStore(SqlStore):
    """The `Store` protocol over one SQLite file (or `:memory:`)."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        keep_events: int = sql.EVENTS_KEEP,
    ):
        super().__init__(keep_events=keep_events)
        self.path = path
        self._busy_timeout = busy_timeout
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
        self._enable_wal(conn)
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

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs the database to itself and answers "locked" at once, without
        # the busy handler, while another process opens it at the same moment: retry a while.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

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

    async def _write_returning(self, query: str, params: sql.Row) -> list[Any]:
        def run(conn: sqlite3.Connection) -> list[Any]:
            with self._transaction(conn):
                return conn.execute(query, params).fetchall()

        return await self._call(run)

    async def _write_steps(self, steps: Iterable[sql.Step]) -> list[Any]:
        def run(conn: sqlite3.Connection) -> list[Any]:
            returned: list[Any] = []
            try:
                with self._transaction(conn):
                    for step in steps:
                        if isinstance(step, sql.Guarded):
                            sql.check_guard(step, conn.executemany(step.query, step.rows).rowcount)
                        elif isinstance(step, sql.Returning):
                            returned.extend(conn.execute(step.query, step.params).fetchall())
                        else:
                            conn.executemany(*step)
            except (TypeError, ValueError) as exc:
                raise sql.serialise_failure(exc, self.path) from exc
            return returned

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
