"""Store test helpers: one URL per test for every backend, cleaned up afterwards.

The fixtures below are used by assignment in a test module, under the name its tests take:
`url = store_fixtures.backend_url`, `store = store_fixtures.backend_store` (a store of that
`url`), or `store = store_fixtures.sqlite_store`.

PostgreSQL tests get a fresh schema (selected through `search_path` in the URL's `options`)
and drop it at the end, so they can run again and again on one database. An unreachable
server skips them, except under CI (`$CI` set), where it fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import psycopg
import pytest

from bridge.store.base import Store
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore

PG_URL = os.environ.get("BRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@asynccontextmanager
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty state store of `backend`, removed after the block."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unreachable(exc)
    async with admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


def unreachable(exc: Exception) -> NoReturn:
    """A developer without PostgreSQL skips its tests; CI (`$CI` set) fails instead, so a CI
    run without the database is never green."""
    message = f"PostgreSQL not reachable at {PG_URL}: {exc}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the PostgreSQL suite must run; start the server "
                    "or set BRIDGE_TEST_POSTGRES)", pytrace=False)
    pytest.skip(message)


def make_store(url: str, **options: Any) -> Store:
    """Like `open_store`, with backend options (e.g. `keep_events`) the URL cannot carry."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), **options)
    return PostgresStore(url, **options)


@asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[Store]:
    store = make_store(url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=BACKENDS)
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty store, once for each backend."""
    async with store_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture
async def backend_store(url: str) -> AsyncIterator[Store]:
    """The store at the module's `url` fixture, opened."""
    async with opened(url) as value:
        yield value


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite store in the test's folder, opened."""
    async with opened(f"sqlite:///{tmp_path}/state.db") as value:
        yield value
