"""The four primitives a SQL backend supplies (SQLite, PostgreSQL); every query mixin and
`SqlStore` are written over them, so they are declared once, here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from bridge.store import sql


class SqlPrimitives(ABC):
    """How to run SQL: `_rows` (read), `_write` (one statement in a transaction, returning
    the row count), `_write_returning` (one statement in a transaction, returning its rows)
    and `_write_steps` (many statements in one transaction, returning the rows of its
    `Returning` steps). Queries use `?` placeholders."""

    @abstractmethod
    async def _rows(self, query: str, params: sql.Row = ()) -> list[Any]: ...

    @abstractmethod
    async def _write(self, query: str, params: sql.Row = ()) -> int: ...

    @abstractmethod
    async def _write_returning(self, query: str, params: sql.Row) -> list[Any]: ...

    @abstractmethod
    async def _write_steps(self, steps: Iterable[sql.Step]) -> list[Any]:
        """Run the steps in one transaction; a `sql.Guarded` step that changes fewer rows
        than it has raises StaleCommit (see `sql.check_guard`) and rolls everything back.
        Returns the rows of the `sql.Returning` steps, in order."""
