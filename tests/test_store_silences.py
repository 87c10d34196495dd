"""Silences in every store backend (SQLite, PostgreSQL): add, list, expire, resolve with a
poll's commit, and silenced outbox rows that are recorded but never claimed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.model import DeliveryStatus
from bridge.silences import EndReason, Silence, SilenceStatus, new_silence
from bridge.store.base import PollCommit, Store
from tests import store_fixtures
from tests.test_store_contract import note

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


url = store_fixtures.backend_url
store = store_fixtures.backend_store


def silence(until: timedelta | None = timedelta(hours=2), **body: object) -> Silence:
    request: dict[str, object] = {"matchers": {"source": "jtl*", "job.id": "3c90*"},
                                  "comment": "ERP upgrade", "author": "ops@example.com",
                                  **body}
    if until is not None:
        request["ends"] = (T0 + until).isoformat()
    return new_silence(request, T0)


async def test_silence_round_trips(store: Store) -> None:
    made = silence()
    await store.add_silence(made)
    assert await store.get_silence(made.id) == made
    assert await store.active_silences(T0) == [made]
    assert await store.list_silences(T0) == [made]


async def test_a_silence_is_active_from_its_start_until_its_end(store: Store) -> None:
    later = new_silence({"matchers": {"rule": "job-failed"},
                         "starts": (T0 + timedelta(hours=1)).isoformat(),
                         "ends": (T0 + timedelta(hours=2)).isoformat()}, T0)
    await store.add_silence(later)
    assert await store.active_silences(T0) == []
    assert [s.id for s in await store.list_silences(T0)] == [later.id]  # pending is listed
    assert [s.id for s in await store.active_silences(T0 + timedelta(hours=1))] == [later.id]
    assert await store.active_silences(T0 + timedelta(hours=2)) == []
    assert await store.list_silences(T0 + timedelta(hours=2)) == []
    assert [s.id for s in await store.list_silences(T0, expired=True)] == [later.id]


async def test_expire_ends_a_silence_now_once(store: Store) -> None:
    made = silence()
    await store.add_silence(made)
    assert await store.expire_silence(made.id, T0 + timedelta(minutes=5)) is True
    assert await store.expire_silence(made.id, T0 + timedelta(minutes=6)) is False
    assert await store.expire_silence("sil_unknown", T0) is False
    ended = await store.get_silence(made.id)
    assert ended is not None
    assert ended.ends == T0 + timedelta(minutes=5)
    assert ended.ended is EndReason.EXPIRED
    assert ended.status(T0 + timedelta(minutes=5)) is SilenceStatus.EXPIRED
    assert await store.active_silences(T0 + timedelta(minutes=5)) == []


async def test_until_resolved_ends_with_the_commit_that_saw_the_success(store: Store) -> None:
    made = silence(until=None, until_resolved=True)
    await store.add_silence(made)
    assert made.ends is None
    at = T0 + timedelta(hours=30)
    assert [s.id for s in await store.active_silences(at)] == [made.id]
    await store.commit_poll(PollCommit(source="jtl", ended_silences=[made.id], at=at))
    ended = await store.get_silence(made.id)
    assert ended is not None
    assert (ended.ends, ended.ended) == (at, EndReason.RESOLVED)
    assert await store.active_silences(at) == []


async def test_silenced_rows_are_recorded_and_never_claimed(store: Store) -> None:
    sent, muted = note(1), replace(note(2), silenced="silence sil_x (ERP upgrade)")
    await store.commit_poll(PollCommit(source="src", notifications=[sent, muted], at=T0))
    claimed = await store.claim_due(T0 + timedelta(hours=1), 10, timedelta(seconds=30))
    [row] = await store.list_outbox(DeliveryStatus.SILENCED)
    stats = await store.outbox_stats()
    assert [d.notification.job_id for d in claimed] == ["j1"]
    assert row.notification == muted
    assert row.status is DeliveryStatus.SILENCED
    assert stats.pending == 1
