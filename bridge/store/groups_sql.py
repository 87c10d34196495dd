"""The SQL of groups (bridge.groups), shared by the SQL backends, beside `sql.py`.

An event joins the open group of its (rule, key), opening it if there is none, inside the
poll's own transaction: a group never misses an event that was committed, and never holds
one that was not. A flush queues the digest's outbox rows, marks the events it showed and
moves the group on, in one transaction, guarded by a compare-and-set on the group's flush
count; its outbox ids are stable per (group, flush number) as well.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from bridge.groups.model import GroupedEvent, GroupEntry, GroupFlush, OpenGroup, group_id
from bridge.model import Event, from_json, to_json
from bridge.store import coalesce
from bridge.store.sql import INSERT_OUTBOX, Guarded, Row, Step, dumps, from_us, to_us

OPEN_GROUP = (
    "INSERT INTO groups (id, rule, group_key, first_us, due_us, flushes) "
    "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (rule, group_key) DO NOTHING"
)
# The WHERE also settles SQLite's INSERT ... SELECT ... ON CONFLICT parsing ambiguity.
JOIN_GROUP = (
    "INSERT INTO group_events (group_id, event_id, added_us, flushed, data) "
    "SELECT id, ?, ?, 0, ? FROM groups WHERE rule = ? AND group_key = ? "
    "ON CONFLICT (group_id, event_id) DO NOTHING"
)
_GROUP_COLS = "id, rule, group_key, first_us, due_us, flushes"
DUE_GROUPS = f"SELECT {_GROUP_COLS} FROM groups WHERE due_us <= ? ORDER BY due_us, id LIMIT ?"
ALL_GROUPS = f"SELECT {_GROUP_COLS} FROM groups ORDER BY first_us, id"
GROUP_EVENTS = (
    "SELECT flushed, data FROM group_events WHERE group_id = ? ORDER BY added_us, event_id"
)
# Compare-and-set on the flush count: of two flushers that read the same group, one wins.
ADVANCE = "UPDATE groups SET flushes = flushes + 1, due_us = ? WHERE id = ? AND flushes = ?"
# Nothing new but jobs still running: only the next look moves.
POSTPONE = "UPDATE groups SET due_us = ? WHERE id = ? AND flushes = ?"
MARK_SHOWN = "UPDATE group_events SET flushed = 1 WHERE group_id = ? AND event_id = ?"
# A group closes only if nothing new joined since it was read; its rows and its Slack message
# go with it (the message only once no digest of it waits in the outbox).
CLOSE = (
    "DELETE FROM groups WHERE id = ? AND flushes = ? AND NOT EXISTS "
    "(SELECT 1 FROM group_events WHERE group_id = ? AND flushed = 0)"
)
_GONE = "NOT EXISTS (SELECT 1 FROM groups WHERE id = ?)"
CLOSE_EVENTS = f"DELETE FROM group_events WHERE group_id = ? AND {_GONE}"
CLOSE_REFS = (
    f"DELETE FROM message_refs WHERE job_id = ? AND {_GONE} AND NOT EXISTS "
    "(SELECT 1 FROM outbox WHERE job_id = ? AND status = 'pending')"
)
_US = timedelta(microseconds=1)
INSERT_DIGEST = INSERT_OUTBOX


def join_steps(entries: Sequence[GroupEntry], at_us: int) -> Iterator[Step]:
    """The statements that put a poll's grouped events into their groups."""
    if not entries:
        return
    yield OPEN_GROUP, (
        (group_id(e.rule, e.key, e.event.id), e.rule, e.key, at_us, at_us + e.wait // _US)
        for e in entries
    )
    yield JOIN_GROUP, (
        (e.event.id, at_us + i, to_json(e.event), e.rule, e.key) for i, e in enumerate(entries)
    )


def group_from(row: Row, events: Sequence[Row]) -> OpenGroup:
    gid, rule, key, first, due, flushes = row
    return OpenGroup(
        id=gid, rule=rule, key=key, first_at=_at(first), due_at=_at(due), flushes=int(flushes),
        events=[GroupedEvent(event=from_json(Event, data), flushed=bool(flushed))
                for flushed, data in events],
    )


def flush_steps(flush: GroupFlush, at_us: int) -> list[Step]:
    """The statements of one flush. The move comes first and is guarded: a flusher that
    lost the race (another one moved the group), or a close while new events joined, rolls
    the whole flush back (StaleCommit), so a flush is written once: one digest."""
    gid = flush.group_id
    if flush.due_at is None:
        return [Guarded(CLOSE, [(gid, flush.flushes, gid)], f"group {gid} changed meanwhile"),
                (CLOSE_EVENTS, [(gid, gid)]), (CLOSE_REFS, [(gid, gid, gid)])]
    move = ADVANCE if flush.notifications or flush.shown else POSTPONE
    return [
        Guarded(move, [(to_us(flush.due_at), gid, flush.flushes)],
                f"group {gid} was flushed by another flusher"),
        (INSERT_DIGEST, [
            (n.delivery_id, n.sink, n.source, n.job_id, at_us + i, at_us, n.priority.rank,
             dumps(n.as_dict()), coalesce.mergeable(n))
            for i, n in enumerate(flush.notifications)]),
        # A newer digest takes the place of the group's earlier one still waiting unsent.
        *coalesce.supersede_steps(flush.notifications, at_us),
        (MARK_SHOWN, [(gid, event_id) for event_id in flush.shown]),
    ]


def _at(us: int) -> datetime:
    moment = from_us(us)
    assert moment is not None  # NOT NULL columns
    return moment
