"""What the SQL backends share: every Store method, written once over four primitives.

A backend (SQLite, PostgreSQL) supplies only how to run SQL: `_rows` (read), `_write` (one
statement in a transaction, returning the row count), `_write_returning` (one statement in a
transaction, returning its rows) and `_write_steps` (many statements in one transaction,
returning the rows of its `Returning` steps), plus
its lifecycle (the four are declared in `bridge.store.primitives`). Queries use `?`
placeholders; a backend translates them if it must.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

from bridge.groups.model import GroupFlush, OpenGroup
from bridge.model import Delivery, DeliveryStatus, Event, SourceHealth, TrackedJob
from bridge.store import claim_sql, groups_sql, shared_sql, silences, sql, taking
from bridge.store.actions import ActionQueries
from bridge.store.base import Lease, MessageRef, OutboxStats, PollCommit, RuleMark, TakeNew
from bridge.store.poll_buckets import PollBucketQueries
from bridge.store.silences import SilenceQueries


class SqlStore(SilenceQueries, ActionQueries, PollBucketQueries):
    """The `Store` protocol over SQL; subclasses say how to talk to their database."""

    # Appended to the claim's SELECTs (`{alias}`: the table's alias in each); PostgreSQL
    # skips rows other instances hold.
    claim_lock = ""
    shared = False
    # Prune expired push webhook-ids once every this many claims (each prune is a write).
    _PRUNE_EVERY = 100

    def __init__(self, *, keep_events: int = sql.EVENTS_KEEP):
        self._keep_events = keep_events
        self._claims_since_prune = 0

    # --- jobs, health, events -------------------------------------------------------------

    async def load_jobs(
        self, source: str, ids: Collection[str] | None = None
    ) -> dict[str, TrackedJob]:
        rows = await self._source_rows(sql.LOAD_JOBS, source, ids)
        return {job.id: job for job in sql.jobs_from([r[0] for r in rows])}

    async def _source_rows(
        self, query: str, source: str, ids: Collection[str] | None
    ) -> list[Any]:
        """`query`'s rows for one source, narrowed to job `ids` when given."""
        if ids is None:
            return await self._rows(query, (source,))
        wanted, rows = sorted(ids), []
        for start in range(0, len(wanted), sql.IDS_PER_QUERY):
            chunk = wanted[start:start + sql.IDS_PER_QUERY]
            rows.extend(await self._rows(sql.by_ids(query, chunk), (source, *chunk)))
        return rows

    async def load_health(self, source: str) -> SourceHealth | None:
        rows = await self._rows(sql.LOAD_HEALTH, (source,))
        return sql.health_from(rows[0][0]) if rows else None

    async def commit_poll(self, commit: PollCommit) -> None:
        await self._write_steps(self._commit_steps(commit))

    async def commit_polls(
        self, commits: Sequence[PollCommit], take: TakeNew | None = None
    ) -> list[Delivery]:
        rows = await self._write_steps(chain(
            (step for c in commits for step in self._commit_steps(c)),
            taking.take_steps(commits, take)))
        return taking.taken(commits, take, {row[0] for row in rows})

    def _commit_steps(self, commit: PollCommit) -> Iterable[sql.Step]:
        muted = [n for n in commit.notifications if n.silenced is not None]
        at = commit.at or datetime.now(UTC)
        return chain(
            sql.commit_steps(commit, self._keep_events),
            silences.commit_steps(muted, commit.ended_silences, at),
            groups_sql.join_steps(commit.grouped, sql.to_us(at)))

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

    async def load_rule_marks(
        self, source: str | None = None, job_ids: Collection[str] | None = None
    ) -> list[RuleMark]:
        if source is None:
            return [sql.mark_from(r) for r in await self._rows(sql.LOAD_MARKS)]
        rows = await self._source_rows(sql.LOAD_SOURCE_MARKS, source, job_ids)
        return [sql.mark_from(r) for r in rows]

    # --- leases, push replay guard ----------------------------------------------------------

    async def acquire_lease(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        now_us = sql.to_us(now)
        rows = await self._write_returning(
            shared_sql.ACQUIRE_LEASE, (name, owner, sql.to_us(now + ttl), now_us, now_us))
        return shared_sql.lease_from(rows[0]) if rows else None

    async def release_lease(self, name: str, owner: str) -> bool:
        return await self._write(shared_sql.RELEASE_LEASE, (name, owner)) > 0

    async def list_leases(self) -> list[Lease]:
        return [shared_sql.lease_from(r) for r in await self._rows(shared_sql.LIST_LEASES)]

    async def claim_message(
        self, source: str, message_id: str, expires: datetime, now: datetime
    ) -> bool:
        self._claims_since_prune += 1
        if self._claims_since_prune >= self._PRUNE_EVERY:
            self._claims_since_prune = 0
            await self._write(shared_sql.PRUNE_MESSAGES, (sql.to_us(now),))
        params = (source, message_id, sql.to_us(expires), sql.to_us(now))
        return await self._write(shared_sql.CLAIM_MESSAGE, params) > 0

    async def forget_message(self, source: str, message_id: str) -> None:
        await self._write(shared_sql.FORGET_MESSAGE, (source, message_id))

    async def get_message_ref(self, sink: str, source: str, job_id: str) -> MessageRef | None:
        rows = await self._rows(sql.GET_REF, (sink, source, job_id))
        return MessageRef(channel=rows[0][0], ts=rows[0][1]) if rows else None

    async def set_message_ref(self, sink: str, source: str, job_id: str, ref: MessageRef) -> None:
        await self._write(sql.SET_REF, (sink, source, job_id, ref.channel, ref.ts))

    # --- groups ---------------------------------------------------------------------------

    async def due_groups(self, now: datetime, limit: int = 100) -> list[OpenGroup]:
        return await self._groups(groups_sql.DUE_GROUPS, (sql.to_us(now), limit))

    async def open_groups(self) -> list[OpenGroup]:
        return await self._groups(groups_sql.ALL_GROUPS)

    async def _groups(self, query: str, params: sql.Row = ()) -> list[OpenGroup]:
        # One query per group: few are due at once, and each is read whole for its digest.
        return [groups_sql.group_from(row, await self._rows(groups_sql.GROUP_EVENTS, (row[0],)))
                for row in await self._rows(query, params)]

    async def flush_group(self, flush: GroupFlush, at: datetime) -> None:
        await self._write_steps(groups_sql.flush_steps(flush, sql.to_us(at)))

    # --- outbox ---------------------------------------------------------------------------

    async def claim_due(
        self, now: datetime, limit: int, lease: timedelta, sink: str | None = None
    ) -> list[Delivery]:
        query = claim_sql.CLAIM_DUE.format(
            lock=self.claim_lock.format(alias="o"), win_lock=self.claim_lock.format(alias="w"),
            sink=claim_sql.CLAIM_SINK_FILTER if sink is not None else "")
        one_sink: tuple[object, ...] = (sink,) if sink is not None else ()
        now_us = sql.to_us(now)
        params = (sql.to_us(now + lease), now_us, *one_sink, now_us, limit, now_us, now_us,
                  limit)
        return sql.sort_claimed(await self._write_returning(query, params))

    async def mark_delivered(self, delivery_id: str, at: datetime) -> None:
        await self._write(sql.MARK_DELIVERED, (sql.to_us(at), delivery_id))

    async def mark_delivered_many(self, delivered: Sequence[tuple[str, datetime]]) -> None:
        rows: list[sql.Row] = [(sql.to_us(at), delivery_id) for delivery_id, at in delivered]
        await self._write_steps([(sql.MARK_DELIVERED, rows)])

    async def mark_retry(self, delivery_id: str, error: str, next_attempt_at: datetime) -> None:
        await self._write(sql.MARK_RETRY, (error, sql.to_us(next_attempt_at), delivery_id))

    async def mark_dead(self, delivery_id: str, error: str, at: datetime) -> None:
        await self._write(sql.MARK_DEAD, (error, sql.to_us(at), delivery_id))

    async def release_claims(
        self, *, expired_by: datetime | None = None, sink: str | None = None
    ) -> int:
        query, params = sql.RELEASE_CLAIMS, list[object]()
        if expired_by is not None:
            query += shared_sql.RELEASE_EXPIRED
            params.append(sql.to_us(expired_by))
        if sink is not None:
            query += shared_sql.RELEASE_SINK
            params.append(sink)
        return await self._write(query, params)

    async def renew_claims(self, delivery_ids: Sequence[str], until: datetime) -> None:
        until_us = sql.to_us(until)
        rows: list[sql.Row] = [(until_us, delivery_id) for delivery_id in delivery_ids]
        await self._write_steps([(shared_sql.RENEW_CLAIM, rows)])

    async def release(self, delivery_ids: Sequence[str], at: datetime) -> None:
        rows: list[sql.Row] = [(sql.to_us(at), delivery_id) for delivery_id in delivery_ids]
        await self._write_steps([(sql.RELEASE_ONE, rows)])

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
        by_status = await self._rows(sql.STATS_BY_STATUS)
        return sql.stats_from(by_status, await self._rows(sql.STATS_BY_SINK))
