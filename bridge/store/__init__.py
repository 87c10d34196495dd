"""The state store: `open_store(url)` picks the backend from the URL's scheme.

    sqlite:///bridge-state.db        a file, relative to the working directory
    sqlite:////var/lib/bridge/s.db   an absolute path (four slashes)
    sqlite:///:memory:               in memory, gone at exit (tests, `bridge render`)
    postgresql://user@host:5432/db   shared by several instances (also postgres://)

The caller then awaits `store.open()` (connect, create or migrate the schema) and finally
`store.close()`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from bridge.errors import ConfigError
from bridge.store.base import Store


def _sqlite(url: str) -> Store:
    from bridge.store.sqlite import SqliteStore

    prefix = "sqlite:///"
    path = url[len(prefix) :] if url.startswith(prefix) else ""
    if not path:
        raise ConfigError(
            f"state: {url!r} names no file: write sqlite:///bridge-state.db (relative), "
            "sqlite:////abs/path.db or sqlite:///:memory:",
            path="bridge.state",
        )
    return SqliteStore(path)


def _postgres(url: str) -> Store:
    from bridge.store.postgres import PostgresStore

    return PostgresStore(url)


BACKENDS: dict[str, Callable[[str], Store]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def open_store(url: str) -> Store:
    """The store for `url`, not yet opened (await `open()`). ConfigError for an unknown scheme."""
    scheme = urlsplit(url).scheme.lower()
    factory = BACKENDS.get(scheme)
    if factory is None:
        supported = ", ".join(f"{name}://" for name in BACKENDS)
        raise ConfigError(
            f"unsupported state store URL {url.split('@')[-1]!r}: use one of {supported} "
            "(e.g. sqlite:///bridge-state.db or postgresql://user@host:5432/db)",
            path="bridge.state",
        )
    return factory(url)


__all__ = ["BACKENDS", "Store", "open_store"]
