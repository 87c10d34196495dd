"""Store contract for several instances on one store, on both backends: leases, the commit
fence, compare-and-set on job records, expired-only claim release, claim renewal and the
shared push replay guard."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest

from bridge.store import schema, sql
from bridge.store.base import PollCommit, RuleMark, StaleCommit, Store
from tests import store_fixtures
from tests.store_fixtures import opened
from tests.test_store_contract import LEASE, T0, event, note, queue, tracked

TTL = timedelta(seconds=10)


url = store_fixtures.backend_url
store = store_fixtures.backend_store


# --- leases --------------------------------------------------------------------------------------


async def test_a_free_lease_is_taken_and_renewed_by_its_owner(store: Store) -> None:
    lease = await store.acquire_lease("source:a", "i1", T0, TTL)
    assert lease is not None and (lease.owner, lease.until, lease.previous) == ("i1", T0 + TTL, "")
    renewed = await store.acquire_lease("source:a", "i1", T0 + timedelta(seconds=5), TTL)
    assert renewed is not None and renewed.until == T0 + timedelta(seconds=15)
    assert renewed.since == T0


async def test_a_held_lease_is_refused_to_others_until_it_expires(store: Store) -> None:
    await store.acquire_lease("source:a", "i1", T0, TTL)
    assert await store.acquire_lease("source:a", "i2", T0 + timedelta(seconds=9), TTL) is None
    taken = await store.acquire_lease("source:a", "i2", T0 + timedelta(seconds=11), TTL)
    assert taken is not None and (taken.owner, taken.previous) == ("i2", "i1")
    assert taken.since == T0 + timedelta(seconds=11)
    # The old owner, back from a pause, cannot renew what was taken over.
    assert await store.acquire_lease("source:a", "i1", T0 + timedelta(seconds=12), TTL) is None
    assert [(x.name, x.owner) for x in await store.list_leases()] == [("source:a", "i2")]


async def test_a_released_lease_is_free_at_once_and_no_takeover(store: Store) -> None:
    await store.acquire_lease("sink:s", "i1", T0, TTL)
    assert await store.release_lease("sink:s", "i2") is False  # not theirs to release
    assert await store.release_lease("sink:s", "i1") is True
    taken = await store.acquire_lease("sink:s", "i2", T0 + timedelta(seconds=1), TTL)
    assert taken is not None and taken.owner == "i2" and taken.previous == ""


async def test_racing_instances_get_an_expired_lease_exactly_once(url: str) -> None:
    async with opened(url) as a, opened(url) as b, opened(url) as c:
        await a.acquire_lease("source:z", "dead", T0, TTL)
        later = T0 + timedelta(minutes=1)
        results = await asyncio.gather(*(
            s.acquire_lease("source:z", owner, later, TTL)
            for s, owner in [(a, "i1"), (b, "i2"), (c, "i3")] * 3
        ))
    winners = {r.owner for r in results if r is not None}
    assert len(winners) == 1
    # Only the winner's own renewals came back (one takeover, from the dead owner).
    assert {r.previous for r in results if r is not None} == {"dead"}


# --- fence and compare-and-set -------------------------------------------------------------------


async def test_a_fenced_commit_needs_the_lease(store: Store) -> None:
    await store.acquire_lease("source:src", "i1", T0, TTL)
    ok = PollCommit(source="src", upserts=[tracked("j1", version=1)], seen_versions={},
                    fence=("source:src", "i1"), at=T0)
    await store.commit_poll(ok)
    stale = PollCommit(source="src", upserts=[tracked("j2", version=1)], events=[event(2)],
                       notifications=[note(2)], seen_versions={},
                       fence=("source:src", "i2"), at=T0)
    with pytest.raises(StaleCommit, match="lease source:src"):
        await store.commit_poll(stale)
    assert set(await store.load_jobs("src")) == {"j1"}
    assert await store.recent_events() == []
    assert (await store.outbox_stats()).pending == 0


async def test_compare_and_set_refuses_a_commit_from_stale_state(store: Store) -> None:
    v1 = tracked("j1", version=1)
    await store.commit_poll(PollCommit(source="src", upserts=[v1], seen_versions={}, at=T0))
    # Instance A, having read version 1, commits version 2.
    a = PollCommit(source="src", upserts=[replace(v1, version=2)], seen_versions={"j1": 1},
                   events=[event(1)], at=T0)
    await store.commit_poll(a)
    # Instance B read version 1 too: its commit (another history) is refused whole.
    b = PollCommit(source="src", upserts=[replace(v1, version=2, stalled=True),
                                           tracked("new", version=1)],
                   seen_versions={"j1": 1}, events=[event(9)], notifications=[note(9)], at=T0)
    with pytest.raises(StaleCommit, match="changed meanwhile"):
        await store.commit_poll(b)
    jobs = await store.load_jobs("src")
    assert set(jobs) == {"j1"} and jobs["j1"].version == 2 and not jobs["j1"].stalled
    assert [e.id for _, e in await store.recent_events()] == [event(1).id]
    assert (await store.outbox_stats()).pending == 0


async def test_compare_and_set_refuses_a_second_first_sighting(store: Store) -> None:
    first = PollCommit(source="src", upserts=[tracked("j1", version=1)], seen_versions={},
                       at=T0)
    await store.commit_poll(first)
    with pytest.raises(StaleCommit, match="new was stored meanwhile"):
        await store.commit_poll(first)


async def test_blind_commits_stay_blind_without_seen_versions(store: Store) -> None:
    # One process owns the store (SQLite's default path): upserts overwrite, as before.
    await store.commit_poll(PollCommit(source="src", upserts=[tracked("j1", version=5)]))
    await store.commit_poll(PollCommit(source="src", upserts=[tracked("j1", version=2)]))
    assert (await store.load_jobs("src"))["j1"].version == 2


async def test_rule_marks_compare_and_set(store: Store) -> None:
    """Two instances that both let a throttled rule through for one job: one commits."""
    first = RuleMark(rule="r", source="src", job_id="j1", notified_at=T0)
    await store.commit_poll(PollCommit(source="src", rule_marks=[first], seen_marks={}, at=T0))
    later = replace(first, notified_at=T0 + timedelta(minutes=20))
    seen = {("r", "src", "j1"): sql.to_us(T0)}
    await store.commit_poll(PollCommit(source="src", rule_marks=[later], seen_marks=seen,
                                       notifications=[note(1)], at=T0))
    rival = replace(first, notified_at=T0 + timedelta(minutes=21))
    with pytest.raises(StaleCommit, match="rule's memory"):
        await store.commit_poll(PollCommit(source="src", rule_marks=[rival], seen_marks=seen,
                                           notifications=[note(2)], at=T0))
    with pytest.raises(StaleCommit, match="rule notified"):  # saw no mark: there is one now
        await store.commit_poll(PollCommit(source="src", rule_marks=[rival], seen_marks={},
                                           at=T0))
    [mark] = await store.load_rule_marks("src")
    assert mark.notified_at == later.notified_at
    assert (await store.outbox_stats()).pending == 1


async def test_rule_marks_load_per_source(store: Store) -> None:
    marks = [RuleMark(rule="r", source=s, job_id="j", notified_at=T0) for s in ("a", "b")]
    await store.commit_poll(PollCommit(source="a", rule_marks=marks, at=T0))
    assert [m.source for m in await store.load_rule_marks("b")] == ["b"]
    assert len(await store.load_rule_marks()) == 2


# --- delivery claims -----------------------------------------------------------------------------


async def test_start_up_releases_only_expired_claims(store: Store) -> None:
    await queue(store, note(1), note(2))
    await store.claim_due(T0, limit=1, lease=timedelta(seconds=30))  # a live instance's
    await store.claim_due(T0, limit=1, lease=timedelta(seconds=5))  # a dead one's
    later = T0 + timedelta(seconds=10)
    assert await store.release_claims(expired_by=later) == 1
    # The live instance's row stays hidden; the dead one's is due again.
    claimed = await store.claim_due(later, limit=5, lease=LEASE)
    assert [d.notification.job_id for d in claimed] == ["j2"]


async def test_release_claims_of_one_sink(store: Store) -> None:
    await queue(store, note(1, sink="a"), note(2, sink="b"))
    await store.claim_due(T0, limit=5, lease=LEASE)
    assert await store.release_claims(sink="a") == 1
    assert [d.notification.sink for d in await store.claim_due(T0, limit=5, lease=LEASE)] == ["a"]


async def test_renewed_claims_stay_hidden_past_their_first_lease(store: Store) -> None:
    await queue(store, note(1))
    [claimed] = await store.claim_due(T0, limit=1, lease=timedelta(seconds=60))
    await store.renew_claims([claimed.id], T0 + timedelta(seconds=120))
    assert await store.claim_due(T0 + timedelta(seconds=90), limit=5, lease=LEASE) == []
    assert len(await store.claim_due(T0 + timedelta(seconds=121), limit=5, lease=LEASE)) == 1


# --- push replay guard ---------------------------------------------------------------------------


async def test_a_pushed_webhook_id_is_accepted_once_by_every_instance(url: str) -> None:
    expires = T0 + timedelta(minutes=5)
    async with opened(url) as a, opened(url) as b:
        assert await a.claim_message("push", "msg_1", expires, T0) is True
        assert await b.claim_message("push", "msg_1", expires, T0) is False
        assert await b.claim_message("other", "msg_1", expires, T0) is True
        await a.forget_message("push", "msg_1")
        assert await b.claim_message("push", "msg_1", expires, T0) is True
        # Past its expiry an id is new again (the signature's timestamp refuses it anyway).
        assert await a.claim_message("push", "msg_1", expires, expires + LEASE) is True


async def test_old_job_rows_get_their_version_column_from_the_data(url: str) -> None:
    """A store written before the version column (schema 3) compares against the version
    its JSON holds, so the first commit after the upgrade is not refused."""
    job = tracked("j1", version=7)
    insert = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?)"
    row = ("src", "j1", "running", 0, sql.to_json(job))
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        for statement in _schema_3("sqlite"):
            conn.execute(statement)
        conn.execute(insert, row)
        conn.commit()
        conn.close()
    else:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as pg:
            for statement in _schema_3("postgresql"):
                await pg.execute(statement)  # type: ignore[arg-type]
            await pg.execute(insert.replace("?", "%s"), row)
    async with opened(url) as store:
        await store.commit_poll(PollCommit(source="src", upserts=[replace(job, version=8)],
                                           seen_versions={"j1": 7}, at=T0))
        assert (await store.load_jobs("src"))["j1"].version == 8


def _schema_3(dialect: schema.Dialect) -> list[str]:
    statements = [schema.VERSION_TABLE, "INSERT INTO schema_version VALUES (3)"]
    for _, step in schema.pending(0, dialect)[:3]:
        statements.extend(step)
    return statements
