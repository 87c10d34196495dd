"""New outbox rows taken at once by the commit that queues them (bridge.store.taking).

A commit given `take` leases the rows it queues for those sinks and returns them, so the
delivery worker sends them without a claim; a job's order and at-least-once still hold.
Over every store backend.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import DeliveryStatus, EventKind, Notification
from bridge.store.base import PollCommit, StaleCommit, Store, TakeNew
from tests import store_fixtures

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)

url = store_fixtures.backend_url
store = store_fixtures.backend_store


def note(event: str, *, job: str = "j1", sink: str = "hook", rule: str = "r") -> Notification:
    return Notification(event_id=event, rule=rule, sink=sink, source="src", job_id=job,
                        payload={"text": event}, on=EventKind.TRANSITION)


def commit(*notes: Notification, at: datetime = T0) -> PollCommit:
    return PollCommit(source="src", notifications=notes, at=at)


def take(*sinks: str, at: datetime = T0) -> TakeNew:
    return TakeNew(sinks=frozenset(sinks), until=at + LEASE)


async def retrying(store: Store, row: Notification, *, until: datetime) -> None:
    """`row` queued, claimed, failed once: it waits for its retry at `until`."""
    await store.commit_polls([commit(row)])
    [claimed] = await store.claim_due(T0, 50, LEASE)
    await store.mark_retry(claimed.id, "503", until)


async def test_a_commit_leases_and_returns_the_rows_it_queues_for_the_taken_sinks(
        store: Store) -> None:
    taken = await store.commit_polls([commit(note("e1"), note("e2", job="j2"))], take("hook"))

    assert [d.notification.event_id for d in taken] == ["e1", "e2"]
    assert [d.id for d in taken] == [note("e1").delivery_id, note("e2", job="j2").delivery_id]
    assert all(d.status is DeliveryStatus.PENDING and d.attempts == 0 for d in taken)
    # Leased: the claim does not take them a second time.
    assert await store.claim_due(T0 + timedelta(seconds=1), 50, LEASE) == []


async def test_rows_for_sinks_not_taken_wait_for_the_claim(store: Store) -> None:
    taken = await store.commit_polls([commit(note("e1"), note("e1", sink="slack"))],
                                     take("hook"))

    assert [d.notification.sink for d in taken] == ["hook"]
    claimed = await store.claim_due(T0, 50, LEASE)
    assert [d.notification.sink for d in claimed] == ["slack"]


async def test_without_take_nothing_is_leased(store: Store) -> None:
    assert await store.commit_polls([commit(note("e1"))]) == []
    assert [d.notification.event_id for d in await store.claim_due(T0, 50, LEASE)] == ["e1"]


async def test_a_row_behind_an_earlier_pending_row_of_its_job_is_left_for_the_claim(
        store: Store) -> None:
    await retrying(store, note("e1"), until=T0 + timedelta(seconds=30))

    later = T0 + timedelta(seconds=1)
    taken = await store.commit_polls([commit(note("e2"), note("e3", job="j2"), at=later)],
                                     take("hook", at=later))

    # j1's new row waits behind its retrying row; j2 has nothing waiting and goes at once.
    assert [d.notification.event_id for d in taken] == ["e3"]
    retry_due = T0 + timedelta(seconds=31)
    claimed = await store.claim_due(retry_due, 50, LEASE)
    assert [d.notification.event_id for d in claimed] == ["e1", "e2"]


async def test_two_new_rows_of_one_job_in_one_commit_both_take_the_claim_in_order(
        store: Store) -> None:
    taken = await store.commit_polls([commit(note("e1"), note("e2"))], take("hook"))

    assert taken == []
    claimed = await store.claim_due(T0, 50, LEASE)
    assert [d.notification.event_id for d in claimed] == ["e1", "e2"]


async def test_a_repeated_row_already_waiting_for_its_retry_is_not_taken_early(
        store: Store) -> None:
    await retrying(store, note("e1"), until=T0 + timedelta(seconds=30))

    # The same event again (a replay): its row exists, so the insert leaves it alone.
    later = T0 + timedelta(seconds=1)
    taken = await store.commit_polls([commit(note("e1"), at=later)], take("hook", at=later))

    assert taken == []
    assert await store.claim_due(later, 50, LEASE) == []


async def test_a_taken_row_never_recorded_is_due_again_at_the_next_start_with_its_id(
        store: Store) -> None:
    taken = await store.commit_polls([commit(note("e1"))], take("hook"))

    # A kill -9 before the send was recorded: the next start releases every claim.
    assert await store.release_claims() == 1
    claimed = await store.claim_due(T0, 50, LEASE)
    assert [d.id for d in claimed] == [taken[0].id]


async def test_a_failed_commit_takes_nothing(store: Store) -> None:
    await store.commit_polls([commit(note("e1"))])
    stale = PollCommit(source="src", notifications=(note("e2", job="j2"),), at=T0,
                       fence=("source:src", "someone-else"))

    with pytest.raises(StaleCommit):
        await store.commit_polls([stale], take("hook"))
    claimed = await store.claim_due(T0, 50, LEASE)
    assert [d.notification.event_id for d in claimed] == ["e1"]
