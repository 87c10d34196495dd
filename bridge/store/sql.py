"""SQL and row codecs shared by the SQL backends (SQLite, PostgreSQL).

Queries use `?` placeholders; the PostgreSQL backend rewrites them to `%s` (no query here
contains a literal `?` or `%`). Values are stored as JSON text through the domain values'
one codec (`bridge.model`: `as_dict` / `from_dict`, `to_json` / `from_json`); the columns
beside the JSON are the ones queries filter on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.errors import StoreError
from bridge.model import (
    DataError,
    Delivery,
    DeliveryStatus,
    Event,
    Notification,
    SourceHealth,
    TrackedJob,
    from_data,
    from_json,
    to_json,
)
from bridge.store import cas, coalesce
from bridge.store.base import OutboxStats, PollCommit, RuleMark
from bridge.store.cas import Guarded, Returning, check_guard
from bridge.store.times import EPOCH as _EPOCH
from bridge.store.times import from_us, to_us

Row = Sequence[Any]


Step = tuple[str, Iterable[Row]] | Guarded | Returning
__all__ = ["Guarded", "Returning", "check_guard", "from_us", "to_us"]

# Delivered outbox rows are kept this long (dashboard, `bridge outbox`), then pruned.
DELIVERED_KEEP = timedelta(days=7)
EVENTS_KEEP = 10_000



def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# --- codecs -----------------------------------------------------------------------------


def health_json(health: SourceHealth) -> str:
    return to_json(health)


def health_from(text: str) -> SourceHealth:
    return from_json(SourceHealth, text)


# A job's timestamps, as stored; jobs_from shares equal ones between jobs.
_JOB_TIMES = ("first_seen", "last_seen", "started_at", "moved_at", "missing_since",
              "finished_at")


def jobs_from(texts: Sequence[str]) -> list[TrackedJob]:
    """Decode many job rows at once. One `json.loads` over all of them shares the dict keys
    between jobs (the decoder memoises keys per call), which keeps 100,000 loaded jobs small."""
    if not texts:
        return []
    decoded = json.loads("[" + ",".join(texts) + "]")
    shared: dict[str, str] = {}
    times: dict[str, datetime] = {}
    jobs = []
    for data in decoded:
        _share_strings(data, shared)
        _share_times(data, times)
        try:
            jobs.append(from_data(TrackedJob, data))
        except DataError as exc:
            job_id = (data.get("status") or {}).get("id")
            raise StoreError(f"stored job {job_id!r} is corrupt: {exc}") from None
    return jobs


def _share_times(data: dict[str, Any], times: dict[str, datetime]) -> None:
    """Parse the timestamps before the codec does, one object per distinct moment: jobs seen
    in one poll carry the same ones, and 100,000 jobs x 4 datetimes is memory worth keeping
    (the codec keeps a datetime it is given as it is)."""
    for key in _JOB_TIMES:
        text = data.get(key)
        if isinstance(text, str):
            found = times.get(text)
            if found is None:
                found = times[text] = datetime.fromisoformat(text)
            data[key] = found


def _share_strings(data: dict[str, Any], shared: dict[str, str]) -> None:
    """Let equal strings be one object again, as they were before saving: the source name
    and raw state across jobs, and the id and url that also appear in the raw `fields`."""
    data["source"] = shared.setdefault(data["source"], data["source"])
    status = data["status"]
    raw = status.get("raw_state")
    if isinstance(raw, str):
        status["raw_state"] = shared.setdefault(raw, raw)
    fields = status.get("fields")
    if isinstance(fields, dict):
        for key in ("id", "url"):
            if key in fields and fields[key] == status.get(key):
                status[key] = fields[key]


OUTBOX_COLS = ("id, status, created_us, next_attempt_us, attempts, last_error, finished_us, "
               "data, replaced")


def _notification(data: str) -> Notification:
    # Read by the model in one step (a claim reads every row it sends); a row whose fields
    # need `from_dict`'s defaults (one queued by an older release) goes the long way.
    try:
        return from_json(Notification, data)
    except DataError:
        return Notification.from_dict(json.loads(data))


def delivery_from(row: Row) -> Delivery:
    delivery_id, status, created, next_at, attempts, error, finished, data, replaced = row
    state = DeliveryStatus(status)
    return Delivery(
        id=delivery_id,
        notification=_notification(data),
        created_at=from_us(created) or _EPOCH,
        status=state,
        attempts=attempts,
        next_attempt_at=from_us(next_at),
        last_error=error,
        delivered_at=from_us(finished) if state is DeliveryStatus.DELIVERED else None,
        replaced=int(replaced or 0),
    )


def mark_from(row: Row) -> RuleMark:
    rule, source, job_id, notified, state = row
    return RuleMark(
        rule=rule,
        source=source,
        job_id=job_id,
        notified_at=from_us(notified) or _EPOCH,
        state=state,
    )


def event_from(row: Row) -> tuple[int, Event]:
    seq, data = row
    return int(seq), Event.from_dict(json.loads(data))


def stats_from(by_status: Iterable[Row], by_sink: Iterable[Row]) -> OutboxStats:
    counts: dict[str, int] = {}
    oldest = None
    for status, count, first in by_status:
        counts[status] = int(count)
        if status == DeliveryStatus.PENDING:
            oldest = from_us(first)
    return OutboxStats(
        pending=counts.get(DeliveryStatus.PENDING, 0),
        dead=counts.get(DeliveryStatus.DEAD, 0),
        delivered=counts.get(DeliveryStatus.DELIVERED, 0),
        superseded=counts.get(DeliveryStatus.SUPERSEDED, 0),
        oldest_pending=oldest,
        per_sink_pending={sink: int(count) for sink, count in by_sink},
    )


# --- jobs, health, events -----------------------------------------------------------------

LOAD_JOBS = "SELECT data FROM jobs WHERE source = ?"
LOAD_HEALTH = "SELECT data FROM health WHERE source = ?"
LIST_HEALTH = "SELECT data FROM health ORDER BY source"
UPSERT_JOB = (
    "INSERT INTO jobs (source, job_id, state, updated_us, data, version) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (source, job_id) DO UPDATE SET state = excluded.state, "
    "updated_us = excluded.updated_us, data = excluded.data, version = excluded.version"
)
DELETE_JOB = "DELETE FROM jobs WHERE source = ? AND job_id = ?"
DELETE_JOB_MARKS = "DELETE FROM rule_marks WHERE source = ? AND job_id = ?"
DELETE_JOB_REFS = "DELETE FROM message_refs WHERE source = ? AND job_id = ?"
UPSERT_HEALTH = (
    "INSERT INTO health (source, data) VALUES (?, ?) "
    "ON CONFLICT (source) DO UPDATE SET data = excluded.data"
)
INSERT_EVENT = "INSERT INTO events (id, source, kind, at_us, data) VALUES (?, ?, ?, ?, ?)"
PRUNE_EVENTS = "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?"
INSERT_OUTBOX = (
    "INSERT INTO outbox (id, sink, source, job_id, status, created_us, next_attempt_us, "
    "priority, data, mergeable) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
PRUNE_DELIVERED = (
    "DELETE FROM outbox WHERE status IN ('delivered', 'superseded') AND finished_us < ?"
)
UPSERT_MARK = (
    "INSERT INTO rule_marks (rule, source, job_id, notified_us, state) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (rule, source, job_id) DO UPDATE SET notified_us = excluded.notified_us, "
    "state = excluded.state"
)
LOAD_MARKS = "SELECT rule, source, job_id, notified_us, state FROM rule_marks"
LOAD_SOURCE_MARKS = LOAD_MARKS + " WHERE source = ?"
# Ids per query when loading named jobs (well under SQLite's and PostgreSQL's limits).
IDS_PER_QUERY = 500


def by_ids(query: str, ids: Sequence[str]) -> str:
    """`query` (ending in `WHERE source = ?`) narrowed to `len(ids)` job ids."""
    return f"{query} AND job_id IN ({', '.join('?' * len(ids))})"


def list_jobs_query(source: str | None, state: str | None, limit: int) -> tuple[str, Row]:
    where, params = _where(source=source, state=state)
    query = f"SELECT data FROM jobs{where} ORDER BY updated_us DESC, job_id LIMIT ?"
    return query, (*params, limit)


def recent_events_query(limit: int, before: int | None, source: str | None) -> tuple[str, Row]:
    clauses: list[str] = []
    params: list[Any] = []
    if before is not None:
        clauses.append("seq < ?")
        params.append(before)
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return f"SELECT seq, data FROM events{where} ORDER BY seq DESC LIMIT ?", (*params, limit)


def _where(**equal: str | None) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in equal.items() if value is not None]
    params = [value for value in equal.values() if value is not None]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def commit_steps(commit: PollCommit, keep_events: int) -> Iterator[Step]:
    """The statements of one `commit_poll`, in order, each with its rows.

    Rows are generated lazily, inside the transaction: a value that cannot be serialised
    fails the commit half-way, and the rollback must then leave nothing (tested).
    """
    at = commit.at or datetime.now(UTC)
    at_us = to_us(at)
    source = commit.source
    if commit.fence is not None:
        yield cas.fence_step(commit.fence)
    removed = [(source, job_id) for job_id in commit.removals]
    # Forget what rules and sinks remembered of a job together with the job.
    yield DELETE_JOB, removed
    yield DELETE_JOB_MARKS, removed
    yield DELETE_JOB_REFS, removed
    yield from cas.job_steps(commit, at_us, UPSERT_JOB)
    if commit.health is not None:
        yield UPSERT_HEALTH, [(source, health_json(commit.health))]
    yield (
        INSERT_EVENT,
        ((e.id, e.source, str(e.on), to_us(e.at), to_json(e)) for e in commit.events),
    )
    if commit.events:
        yield PRUNE_EVENTS, [(keep_events,)]
    # Rows of one commit are a microsecond apart, in the order the rules made them: claims
    # go by (created_us, id), and the id is a hash, so equal times would send one job's rows
    # in hash order.
    yield (
        INSERT_OUTBOX,
        (
            # `data` is written by the model in one step, as `from_json` reads it.
            (n.delivery_id, n.sink, n.source, n.job_id, created_us, at_us, n.priority.rank,
             to_json(n), coalesce.mergeable(n))
            for created_us, n in queued(commit, at_us)
        ),
    )
    # A row that edits its job's message takes the place of earlier ones still waiting.
    yield from coalesce.supersede_steps(commit.notifications, at_us)
    if commit.notifications:
        yield PRUNE_DELIVERED, [(to_us(at - DELIVERED_KEEP),)]
    yield from cas.mark_steps(commit, UPSERT_MARK)
    yield (
        "DELETE FROM watches WHERE source = ? AND job_id = ?",
        ((source, job_id) for job_id in commit.finished_watches),
    )


def queued(commit: PollCommit, at_us: int) -> Iterator[tuple[int, Notification]]:
    """The outbox rows a commit at `at_us` queues, each with its `created_us`. Silenced ones
    are recorded by bridge.store.silences, never queued."""
    return ((at_us + i, n) for i, n in
            enumerate(n for n in commit.notifications if n.silenced is None))


def serialise_failure(exc: Exception, where: str) -> StoreError:
    return StoreError(
        f"state store {where}: could not serialise a value to JSON ({exc}); nothing of this "
        "poll was written. This is a bug in bridge or a template: please report it"
    )


# --- watches, message refs ------------------------------------------------------------------

ADD_WATCH = "INSERT INTO watches (source, job_id, added_us) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
REMOVE_WATCH = "DELETE FROM watches WHERE source = ? AND job_id = ?"
LIST_WATCHES = "SELECT job_id FROM watches WHERE source = ? ORDER BY added_us, job_id"
GET_REF = "SELECT channel, ts FROM message_refs WHERE sink = ? AND source = ? AND job_id = ?"
SET_REF = (
    "INSERT INTO message_refs (sink, source, job_id, channel, ts) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sink, source, job_id) DO UPDATE SET channel = excluded.channel, "
    "ts = excluded.ts"
)

# --- outbox ---------------------------------------------------------------------------------

MARK_DELIVERED = (
    "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, leased = 0, "
    "finished_us = ?, next_attempt_us = NULL WHERE id = ?"
)
MARK_RETRY = (
    "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_us = ?, "
    "leased = 0 WHERE id = ? AND status = 'pending'"
)
MARK_DEAD = (
    "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?, "
    "finished_us = ?, next_attempt_us = NULL, leased = 0 WHERE id = ?"
)
# A lease outlives a crash; at start-up the claimed rows become due again (at-least-once).
RELEASE_CLAIMS = (
    "UPDATE outbox SET next_attempt_us = created_us, leased = 0 "
    "WHERE status = 'pending' AND leased = 1"
)

_REQUEUE = (
    "UPDATE outbox SET status = 'pending', next_attempt_us = ?, attempts = 0, leased = 0, "
    "finished_us = NULL WHERE "
)
# A pending row that is leased is being sent right now: re-queueing it would send it twice.
RETRY_ONE = _REQUEUE + "id = ? AND (status = 'dead' OR (status = 'pending' AND leased = 0))"
RELEASE_ONE = (
    "UPDATE outbox SET next_attempt_us = ?, leased = 0 "
    "WHERE id = ? AND status = 'pending' AND leased = 1"
)
RETRY_DEAD = _REQUEUE + "status = 'dead'"
DROP_ONE = "DELETE FROM outbox WHERE id = ?"
DROP_DEAD = "DELETE FROM outbox WHERE status = 'dead'"
GET_DELIVERY = f"SELECT {OUTBOX_COLS} FROM outbox WHERE id = ?"
STATS_BY_STATUS = "SELECT status, COUNT(*), MIN(created_us) FROM outbox GROUP BY status"
STATS_BY_SINK = "SELECT sink, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY sink"


def list_outbox_query(status: DeliveryStatus | None, limit: int) -> tuple[str, Row]:
    where, params = _where(status=str(status) if status is not None else None)
    query = f"SELECT {OUTBOX_COLS} FROM outbox{where} ORDER BY created_us DESC, id LIMIT ?"
    return query, (*params, limit)


def sort_claimed(rows: Iterable[Row]) -> list[Delivery]:
    """RETURNING gives no order: put the claimed deliveries oldest first again."""
    return sorted((delivery_from(r) for r in rows), key=lambda d: (d.created_at, d.id))
