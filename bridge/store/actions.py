"""What people did from Slack (table `actions`): who pressed which button on which job.

Written by `POST /v1/slack/interactions` after the action took effect, read by
`GET /v1/actions`; the record of "who acknowledged this" outlives the Slack message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.store import sql
from bridge.store.primitives import SqlPrimitives


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRecord:
    at: datetime
    sink: str
    source: str
    job_id: str
    action: str
    user_id: str
    user_name: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "sink": self.sink, "source": self.source,
                "job_id": self.job_id, "action": self.action, "user_id": self.user_id,
                "user_name": self.user_name, "note": self.note}


_COLS = "at_us, sink, source, job_id, action, user_id, user_name, note"
INSERT = f"INSERT INTO actions ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _list_query(source: str | None, job_id: str | None, limit: int) -> tuple[str, sql.Row]:
    clauses, params = [], []
    for column, value in (("source", source), ("job_id", job_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return (f"SELECT {_COLS} FROM actions{where} ORDER BY seq DESC LIMIT ?",
            (*params, limit))


class ActionQueries(SqlPrimitives):
    """The action-record methods of the `Store` protocol, over a SQL store's primitives."""

    async def record_action(self, record: ActionRecord) -> None:
        await self._write(INSERT, (sql.to_us(record.at), record.sink, record.source,
                                   record.job_id, record.action, record.user_id,
                                   record.user_name, record.note))

    async def list_actions(self, source: str | None = None, job_id: str | None = None,
                           limit: int = 200) -> list[ActionRecord]:
        """Newest first."""
        rows = await self._rows(*_list_query(source, job_id, limit))
        return [ActionRecord(at=sql.from_us(r[0]) or datetime.min, sink=r[1], source=r[2],
                             job_id=r[3], action=r[4], user_id=r[5], user_name=r[6], note=r[7])
                for r in rows]
