"""Groups in the state store, on every backend: joined in the poll's transaction, flushed
with their digest's outbox rows in one, closed only when nothing new joined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.groups.model import GroupEntry, GroupFlush, group_id, key_text
from bridge.model import DeliveryStatus, Event, EventKind, JobState, JobStatus, Notification
from bridge.store.base import MessageRef, PollCommit, StaleCommit, Store
from tests import store_fixtures

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = key_text({"source": "zendesk"})
WAIT = timedelta(seconds=10)


url = store_fixtures.backend_url
store = store_fixtures.backend_store


def failed(job_id: str, at: datetime = T0) -> Event:
    job = JobStatus(id=job_id, state=JobState.FAILED, raw_state="failed")
    return Event(id=f"evt_{job_id}", on=EventKind.TRANSITION, source="zendesk", at=at, job=job,
                 from_state=JobState.RUNNING, to_state=JobState.FAILED)


async def join(store: Store, *job_ids: str, at: datetime = T0, key: str = KEY) -> None:
    entries = [GroupEntry(rule="digest", key=key, event=failed(j, at), wait=WAIT)
               for j in job_ids]
    await store.commit_poll(PollCommit(source="zendesk", events=[e.event for e in entries],
                                       grouped=entries, at=at))


def digest(gid: str, flush: int) -> Notification:
    return Notification(event_id=f"{gid}:{flush}", rule="digest", sink="ops", source="zendesk",
                        job_id=gid, payload={"text": f"flush {flush}"},
                        on=EventKind.TRANSITION)


async def test_events_of_one_key_open_one_group_due_group_wait_after_the_first(
        store: Store) -> None:
    await join(store, "a", "b")
    await join(store, "c", at=T0 + timedelta(seconds=5))
    await join(store, "x", key=key_text({"source": "jtl"}))
    assert await store.due_groups(T0 + WAIT - timedelta(microseconds=1)) == []
    due = sorted(await store.due_groups(T0 + WAIT), key=lambda g: g.key, reverse=True)
    assert [(g.key, [e.event.job.id for e in g.events if e.event.job]) for g in due] == [
        (KEY, ["a", "b", "c"]), (key_text({"source": "jtl"}), ["x"])]
    [group, _] = due
    assert group.id == group_id("digest", KEY, "evt_a")
    assert group.values == {"source": "zendesk"}
    assert group.flushes == 0 and group.first_at == T0 and group.due_at == T0 + WAIT
    assert [e.id for e in group.new] == ["evt_a", "evt_b", "evt_c"]


async def test_a_flush_queues_the_digest_marks_what_it_showed_and_moves_the_group_on(
        store: Store) -> None:
    await join(store, "a", "b")
    [group] = await store.due_groups(T0 + WAIT)
    later = T0 + WAIT + timedelta(minutes=1)
    flush = GroupFlush(group_id=group.id, flushes=0, notifications=[digest(group.id, 1)],
                       shown=["evt_a", "evt_b"], due_at=later)
    await store.flush_group(flush, T0 + WAIT)
    with pytest.raises(StaleCommit):  # written twice (a second flusher): refused whole
        await store.flush_group(flush, T0 + WAIT)
    [row] = await store.list_outbox(DeliveryStatus.PENDING)
    assert row.notification.payload == {"text": "flush 1"} and row.notification.job_id == group.id
    assert await store.due_groups(later - timedelta(seconds=1)) == []
    await join(store, "c", at=T0 + WAIT + timedelta(seconds=1))
    [again] = await store.due_groups(later)
    assert again.flushes == 1 and [e.id for e in again.new] == ["evt_c"]
    assert [e.flushed for e in again.events] == [True, True, False]


async def test_a_group_closes_only_when_nothing_new_joined_and_then_a_new_one_opens(
        store: Store) -> None:
    await join(store, "a")
    [group] = await store.due_groups(T0 + WAIT)
    await store.flush_group(GroupFlush(group_id=group.id, flushes=0, shown=["evt_a"],
                                       due_at=T0 + 2 * WAIT), T0 + WAIT)
    await store.set_message_ref("ops", "zendesk", group.id, MessageRef(channel="C1", ts="1.0"))
    await join(store, "b", at=T0 + WAIT)  # joined after the flusher read the group
    with pytest.raises(StaleCommit):
        await store.flush_group(GroupFlush(group_id=group.id, flushes=1, due_at=None),
                                T0 + 2 * WAIT)
    [still] = await store.open_groups()
    assert still.id == group.id and [e.id for e in still.new] == ["evt_b"]
    await store.flush_group(GroupFlush(group_id=group.id, flushes=1, shown=["evt_b"],
                                       due_at=T0 + 3 * WAIT), T0 + 2 * WAIT)
    await store.flush_group(GroupFlush(group_id=group.id, flushes=2, due_at=None), T0 + 3 * WAIT)
    assert await store.open_groups() == []
    assert await store.get_message_ref("ops", "zendesk", group.id) is None
    await join(store, "c", at=T0 + 4 * WAIT)
    [fresh] = await store.open_groups()
    assert fresh.id != group.id and [e.event.id for e in fresh.events] == ["evt_c"]


async def test_a_flush_that_lost_the_race_does_not_move_the_group(store: Store) -> None:
    await join(store, "a")
    [group] = await store.due_groups(T0 + WAIT)
    await store.flush_group(GroupFlush(group_id=group.id, flushes=0, shown=["evt_a"],
                                       due_at=T0 + 2 * WAIT), T0 + WAIT)
    # A second flusher that read flush count 0 too: nothing of its flush is written.
    late = GroupFlush(group_id=group.id, flushes=0, notifications=[digest(group.id, 1)],
                      shown=["evt_a"], due_at=T0 + 9 * WAIT)
    for flush in (late, GroupFlush(group_id=group.id, flushes=0, due_at=None)):
        with pytest.raises(StaleCommit):
            await store.flush_group(flush, T0 + WAIT)
    [kept] = await store.open_groups()
    assert kept.flushes == 1 and kept.due_at == T0 + 2 * WAIT
    assert await store.list_outbox() == []


async def test_a_look_with_nothing_new_moves_only_the_due_time(store: Store) -> None:
    await join(store, "a")
    [group] = await store.due_groups(T0 + WAIT)
    await store.flush_group(GroupFlush(group_id=group.id, flushes=0, shown=["evt_a"],
                                       due_at=T0 + 2 * WAIT), T0 + WAIT)
    # Nothing new, a job still running: looked at again later, the flush count unchanged.
    await store.flush_group(GroupFlush(group_id=group.id, flushes=1, due_at=T0 + 3 * WAIT),
                            T0 + 2 * WAIT)
    [kept] = await store.open_groups()
    assert (kept.flushes, kept.due_at) == (1, T0 + 3 * WAIT)
