"""One contract suite over every state store backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.errors import ConfigError, StoreError
from bridge.model import (
    DeliveryStatus,
    Event,
    EventKind,
    JobState,
    JobStatus,
    Notification,
    Priority,
    SourceHealth,
    TrackedJob,
)
from bridge.store import open_store, schema
from bridge.store.base import MessageRef, PollCommit, RuleMark, Store
from bridge.store.sqlite import SqliteStore
from tests import store_fixtures
from tests.store_fixtures import opened, store_url

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


url = store_fixtures.backend_url
store = store_fixtures.backend_store


def tracked(job_id: str = "j1", state: JobState = JobState.RUNNING, **kw: object) -> TrackedJob:
    status = JobStatus(
        id=job_id,
        state=state,
        raw_state=str(state),
        progress=40.0,
        message="half way",
        url=f"https://api.example.com/jobs/{job_id}",
        fields={"id": job_id, "nested": {"n": [1, 2]}},
        run=2,
    )
    values: dict[str, object] = {
        "source": "src",
        "status": status,
        "first_seen": T0,
        "last_seen": T0 + timedelta(minutes=1),
        "started_at": T0 + timedelta(seconds=5),
        "moved_at": T0 + timedelta(seconds=30),
        "version": 3,
    }
    values.update(kw)
    return TrackedJob(**values)  # type: ignore[arg-type]


def event(n: int, source: str = "src", kind: EventKind = EventKind.TRANSITION) -> Event:
    job = tracked(f"j{n}").status
    return Event(
        id=f"evt_{source}_{n}",
        on=kind,
        source=source,
        at=T0 + timedelta(seconds=n),
        job=job,
        previous=job,
        from_state=JobState.PENDING,
        to_state=JobState.RUNNING,
        first_seen=T0,
        duration=timedelta(seconds=12.5),
    )


def note(n: int, sink: str = "slack", payload: object = None) -> Notification:
    return Notification(
        event_id=f"evt_{n}",
        rule="job-failed",
        sink=sink,
        source="src",
        job_id=f"j{n}",
        payload=payload if payload is not None else {"text": f"job {n} failed"},  # type: ignore[arg-type]
        on=EventKind.TRANSITION,
        terminal=True,
    )


async def queue(store: Store, *notes: Notification, at: datetime = T0) -> None:
    await store.commit_poll(PollCommit(source="src", notifications=notes, at=at))


# --- jobs, health, events ------------------------------------------------------------------------


async def test_jobs_round_trip(store: Store) -> None:
    jobs = [tracked("a"), tracked("b", JobState.FAILED, finished_at=T0, stalled=True)]
    await store.commit_poll(PollCommit(source="src", upserts=jobs, at=T0))
    assert await store.load_jobs("src") == {j.id: j for j in jobs}
    assert await store.load_jobs("other") == {}


async def test_jobs_and_marks_load_by_id_for_the_named_jobs_only(store: Store) -> None:
    # A push on a shared store reads back the jobs it names, not the whole source; more
    # ids than one query takes are read in several.
    many = [tracked(f"j{n:04d}") for n in range(1_200)]
    marks = [RuleMark(rule="r", source="src", job_id=j, notified_at=T0) for j in ("j0001", "j0002")]
    await store.commit_poll(PollCommit(source="src", upserts=many, rule_marks=marks, at=T0))
    wanted = {"j0001", "j1100", "missing"}
    assert await store.load_jobs("src", wanted) == {j.id: j for j in many
                                                     if j.id in wanted}
    assert len(await store.load_jobs("src", {j.id for j in many})) == 1_200
    assert await store.load_jobs("other", wanted) == {}
    assert await store.load_rule_marks("src", wanted) == marks[:1]


async def test_upsert_replaces_and_removal_forgets_a_job(store: Store) -> None:
    await store.commit_poll(PollCommit(source="src", upserts=[tracked("a"), tracked("b")]))
    newer = tracked("a", JobState.SUCCEEDED, version=4)
    await store.commit_poll(PollCommit(source="src", upserts=[newer], removals=["b"]))
    assert await store.load_jobs("src") == {"a": newer}


async def test_list_jobs_filters_by_source_and_state(store: Store) -> None:
    await store.commit_poll(
        PollCommit(source="src", upserts=[tracked("a"), tracked("b", JobState.FAILED)], at=T0)
    )
    other = tracked("c", source="other")
    await store.commit_poll(PollCommit(source="other", upserts=[other], at=T0))
    assert {j.id for j in await store.list_jobs()} == {"a", "b", "c"}
    assert [j.id for j in await store.list_jobs(source="other")] == ["c"]
    assert [j.id for j in await store.list_jobs(state="failed")] == ["b"]
    assert len(await store.list_jobs(limit=2)) == 2


async def test_health_round_trips_and_lists(store: Store) -> None:
    health = SourceHealth(
        source="src",
        up=False,
        since=T0,
        reason="HTTP 503",
        failures=3,
        last_poll_at=T0,
        last_latency=0.25,
    )
    await store.commit_poll(PollCommit(source="src", health=health))
    assert await store.load_health("src") == health
    assert await store.load_health("nope") is None
    up = SourceHealth(source="a", since=T0)
    await store.commit_poll(PollCommit(source="a", health=up))
    assert await store.list_health() == [up, health]


async def test_events_round_trip_newest_first(store: Store) -> None:
    events = [event(n) for n in range(3)]
    await store.commit_poll(PollCommit(source="src", events=events))
    stored = await store.recent_events()
    assert [e for _, e in stored] == events[::-1]
    seqs = [seq for seq, _ in stored]
    assert seqs == sorted(seqs, reverse=True)


async def test_events_page_with_before_and_filter_by_source(store: Store) -> None:
    await store.commit_poll(PollCommit(source="src", events=[event(n) for n in range(5)]))
    await store.commit_poll(PollCommit(source="b", events=[event(9, source="b")]))
    first = await store.recent_events(limit=2, source="src")
    assert [e.id for _, e in first] == ["evt_src_4", "evt_src_3"]
    second = await store.recent_events(limit=2, before=first[-1][0], source="src")
    assert [e.id for _, e in second] == ["evt_src_2", "evt_src_1"]
    assert [e.id for _, e in await store.recent_events(limit=1)] == ["evt_b_9"]


async def test_old_events_are_pruned_beyond_the_cap(url: str) -> None:
    async with opened(url, keep_events=3) as store:
        for n in range(6):
            await store.commit_poll(PollCommit(source="src", events=[event(n)]))
        assert [e.id for _, e in await store.recent_events()] == [
            "evt_src_5",
            "evt_src_4",
            "evt_src_3",
        ]


# --- watches, rule marks, message refs -----------------------------------------------------------


async def test_watches_add_list_remove(store: Store) -> None:
    assert await store.add_watch("es", "1234567890123456789")
    assert not await store.add_watch("es", "1234567890123456789")
    assert await store.add_watch("es", "2")
    assert await store.list_watches("es") == ["1234567890123456789", "2"]
    assert await store.list_watches("other") == []
    assert await store.remove_watch("es", "2")
    assert not await store.remove_watch("es", "2")
    assert await store.list_watches("es") == ["1234567890123456789"]


async def test_finished_watches_are_dropped_by_the_commit(store: Store) -> None:
    await store.add_watch("src", "a")
    await store.add_watch("src", "b")
    await store.commit_poll(PollCommit(source="src", finished_watches=["a"]))
    assert await store.list_watches("src") == ["b"]


async def test_rule_marks_round_trip_and_update(store: Store) -> None:
    mark = RuleMark(rule="r", source="src", job_id="j1", notified_at=T0, state="failed")
    await store.commit_poll(PollCommit(source="src", rule_marks=[mark]))
    later = RuleMark(rule="r", source="src", job_id="j1", notified_at=T0 + LEASE, state=None)
    other = RuleMark(rule="q", source="src", job_id="j1", notified_at=T0)
    await store.commit_poll(PollCommit(source="src", rule_marks=[later, other]))
    marks = await store.load_rule_marks()
    assert sorted(marks, key=lambda m: m.rule) == [other, later]


async def test_message_refs_set_get_and_overwrite(store: Store) -> None:
    assert await store.get_message_ref("slack", "src", "j1") is None
    await store.set_message_ref("slack", "src", "j1", MessageRef(channel="C1", ts="1.0"))
    await store.set_message_ref("slack", "src", "j1", MessageRef(channel="C1", ts="2.0"))
    assert await store.get_message_ref("slack", "src", "j1") == MessageRef(channel="C1", ts="2.0")
    assert await store.get_message_ref("other", "src", "j1") is None


async def test_removing_a_job_forgets_its_rule_marks_and_message_refs(store: Store) -> None:
    mark = RuleMark(rule="r", source="src", job_id="j1", notified_at=T0)
    await store.commit_poll(PollCommit(source="src", upserts=[tracked("j1")], rule_marks=[mark]))
    await store.set_message_ref("slack", "src", "j1", MessageRef(channel="C", ts="1"))
    await store.commit_poll(PollCommit(source="src", removals=["j1"]))
    assert await store.load_rule_marks() == []
    assert await store.get_message_ref("slack", "src", "j1") is None


# --- atomicity, restart, migrations --------------------------------------------------------------


async def test_failure_mid_commit_leaves_nothing(store: Store) -> None:
    broken = note(1, payload={"text": object()})
    commit = PollCommit(
        source="src",
        upserts=[tracked("a")],
        health=SourceHealth(source="src", since=T0),
        events=[event(1)],
        notifications=[note(0), broken],
        at=T0,
    )
    with pytest.raises(StoreError, match="serialise"):
        await store.commit_poll(commit)
    assert await store.load_jobs("src") == {}
    assert await store.load_health("src") is None
    assert await store.recent_events() == []
    assert await store.list_outbox() == []


async def test_a_group_of_commits_is_one_transaction_in_order(store: Store) -> None:
    # Group commit (concurrent pushes): the later commit of a job wins, all land together.
    await store.commit_polls([
        PollCommit(source="src", upserts=[tracked("a")], notifications=[note(1)], at=T0),
        PollCommit(source="src", upserts=[tracked("a", JobState.FAILED, version=2)],
                   notifications=[note(2)], at=T0 + timedelta(milliseconds=5)),
    ])
    jobs = await store.load_jobs("src")
    assert jobs["a"].status.state is JobState.FAILED
    claimed = await store.claim_due(T0 + timedelta(seconds=1), limit=10, lease=LEASE)
    assert [d.notification.event_id for d in claimed] == ["evt_1", "evt_2"]
    # One broken commit in a group: none of the group is written.
    broken = PollCommit(source="src", notifications=[note(4, payload={"text": object()})],
                        at=T0)
    with pytest.raises(StoreError, match="serialise"):
        await store.commit_polls([PollCommit(source="src", upserts=[tracked("b")], at=T0),
                                  broken])
    assert "b" not in await store.load_jobs("src")


async def test_restart_keeps_everything(url: str) -> None:
    async with opened(url) as store:
        await store.commit_poll(
            PollCommit(
                source="src",
                upserts=[tracked("a")],
                health=SourceHealth(source="src", since=T0),
                events=[event(1)],
                notifications=[note(1)],
                rule_marks=[RuleMark(rule="r", source="src", job_id="a", notified_at=T0)],
                at=T0,
            )
        )
        await store.add_watch("src", "w")
        await store.set_message_ref("slack", "src", "a", MessageRef(channel="C", ts="1"))
    async with opened(url) as store:
        assert list(await store.load_jobs("src")) == ["a"]
        assert await store.load_health("src") == SourceHealth(source="src", since=T0)
        assert [e.id for _, e in await store.recent_events()] == ["evt_src_1"]
        assert [d.id for d in await store.list_outbox()] == [note(1).delivery_id]
        assert len(await store.load_rule_marks()) == 1
        assert await store.list_watches("src") == ["w"]
        assert await store.get_message_ref("slack", "src", "a") is not None


async def test_opening_again_does_not_migrate_again(url: str) -> None:
    async with opened(url):
        pass
    async with opened(url) as a, opened(url) as b:
        await a.ping()
        await b.ping()
    conn_url = url.removeprefix("sqlite:///")
    if url.startswith("sqlite"):
        with sqlite3.connect(conn_url) as conn:
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(schema.LATEST,)]


async def test_store_opened_concurrently_migrates_once(url: str) -> None:
    stores = [open_store(url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        for s in stores:
            await s.ping()
    finally:
        for s in stores:
            await s.close()


async def test_calls_after_close_raise_store_error(url: str) -> None:
    async with opened(url) as store:
        pass
    with pytest.raises(StoreError, match="not open"):
        await store.load_jobs("src")


# --- outbox ------------------------------------------------------------------------------------


async def test_notifications_are_queued_pending_and_due_at_once(store: Store) -> None:
    await queue(store, note(1))
    [delivery] = await store.list_outbox()
    assert delivery.id == note(1).delivery_id
    assert delivery.notification == note(1)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.attempts == 0 and delivery.created_at == T0 and delivery.next_attempt_at == T0


async def test_duplicate_notification_is_ignored(store: Store) -> None:
    await queue(store, note(1))
    await queue(store, note(1), at=T0 + LEASE)
    assert len(await store.list_outbox()) == 1
    assert (await store.outbox_stats()).pending == 1


async def test_claim_due_returns_oldest_first_and_leases(store: Store) -> None:
    await queue(store, note(2), at=T0 + timedelta(seconds=2))
    await queue(store, note(1), at=T0 + timedelta(seconds=1))
    await queue(store, note(3), at=T0 + timedelta(hours=1))
    now = T0 + timedelta(seconds=10)
    claimed = await store.claim_due(now, limit=10, lease=LEASE)
    assert [d.notification.event_id for d in claimed] == ["evt_1", "evt_2"]
    assert await store.claim_due(now + timedelta(seconds=59), limit=10, lease=LEASE) == []
    again = await store.claim_due(now + LEASE, limit=10, lease=LEASE)
    assert [d.notification.event_id for d in again] == ["evt_1", "evt_2"]


def urgent(n: int, priority: Priority, job: str | None = None) -> Notification:
    return replace(note(n), job_id=job or f"j{n}", priority=priority)


async def test_claim_due_takes_the_most_urgent_rows_first(store: Store) -> None:
    # Fifty starts, then a failure of another job: a small batch takes the failure first.
    for n in range(50):
        await queue(store, urgent(n, Priority.LOW), at=T0 + timedelta(milliseconds=n))
    await queue(store, urgent(99, Priority.HIGH), at=T0 + timedelta(seconds=1))
    claimed = await store.claim_due(T0 + timedelta(seconds=2), limit=3, lease=LEASE)
    assert {d.notification.event_id for d in claimed} == {"evt_99", "evt_0", "evt_1"}
    assert claimed[-1].notification.priority is Priority.HIGH  # returned oldest first


async def test_an_urgent_row_pulls_its_jobs_earlier_rows_along_in_order(store: Store) -> None:
    await queue(store, urgent(1, Priority.LOW, job="other"), at=T0)
    await queue(store, urgent(2, Priority.LOW, job="j"), at=T0 + timedelta(seconds=1))
    await queue(store, urgent(3, Priority.LOW, job="j"), at=T0 + timedelta(seconds=2))
    await queue(store, urgent(4, Priority.HIGH, job="j"), at=T0 + timedelta(seconds=3))
    now = T0 + timedelta(seconds=5)
    first = await store.claim_due(now, limit=2, lease=LEASE)
    # Job j is urgent: its rows come first and in order; the failure never overtakes them.
    assert [d.notification.event_id for d in first] == ["evt_2", "evt_3"]
    # While they are out, the job's failure waits for them (another job's row goes instead).
    second = await store.claim_due(now, limit=2, lease=LEASE)
    assert [d.notification.event_id for d in second] == ["evt_1"]
    await store.mark_delivered_many([(d.id, now) for d in first])
    third = await store.claim_due(now, limit=2, lease=LEASE)
    assert [d.notification.event_id for d in third] == ["evt_4"]


async def test_claim_due_respects_the_limit(store: Store) -> None:
    await queue(store, *(note(n) for n in range(5)))
    assert len(await store.claim_due(T0, limit=2, lease=LEASE)) == 2
    assert len(await store.claim_due(T0, limit=10, lease=LEASE)) == 3


async def test_claim_due_for_one_sink_leaves_the_others(store: Store) -> None:
    await queue(store, note(1, sink="slack"), note(2, sink="pager"), note(3, sink="slack"))
    claimed = await store.claim_due(T0, limit=10, lease=LEASE, sink="pager")
    assert [d.notification.event_id for d in claimed] == ["evt_2"]
    rest = await store.claim_due(T0, limit=10, lease=LEASE, sink="slack")
    assert [d.notification.event_id for d in rest] == ["evt_1", "evt_3"]


async def test_rows_of_one_commit_are_claimed_in_the_order_they_were_made(store: Store) -> None:
    # Ids are hashes: twenty rows in hash order would be out of order almost surely.
    notes = [Notification(event_id=f"evt_{n}", rule="r", sink="slack", source="src",
                          job_id="j1", payload={"text": str(n)}, on=EventKind.PROGRESS)
             for n in range(20)]
    await queue(store, *notes)
    claimed = await store.claim_due(T0, limit=50, lease=LEASE)
    assert [d.notification.event_id for d in claimed] == [n.event_id for n in notes]


async def test_two_claimers_never_get_the_same_delivery(url: str) -> None:
    async with opened(url) as a, opened(url) as b:
        await queue(a, *(note(n) for n in range(20)))
        batches = await asyncio.gather(
            *(s.claim_due(T0, limit=3, lease=LEASE) for s in (a, b, a, b, a, b, a, b))
        )
    ids = [d.id for batch in batches for d in batch]
    assert len(ids) == len(set(ids)) == 20


async def test_mark_retry_counts_the_attempt_and_schedules_the_next(store: Store) -> None:
    await queue(store, note(1))
    [d] = await store.claim_due(T0, limit=1, lease=LEASE)
    await store.mark_retry(d.id, "HTTP 503", T0 + timedelta(seconds=30))
    stored = await store.get_delivery(d.id)
    assert stored is not None
    assert stored.attempts == 1 and stored.last_error == "HTTP 503"
    assert stored.next_attempt_at == T0 + timedelta(seconds=30)
    assert await store.claim_due(T0 + timedelta(seconds=29), limit=1, lease=LEASE) == []
    assert len(await store.claim_due(T0 + timedelta(seconds=30), limit=1, lease=LEASE)) == 1


async def test_mark_delivered_finishes_the_delivery(store: Store) -> None:
    await queue(store, note(1))
    [d] = await store.claim_due(T0, limit=1, lease=LEASE)
    await store.mark_delivered(d.id, T0 + timedelta(seconds=1))
    stored = await store.get_delivery(d.id)
    assert stored is not None and stored.status is DeliveryStatus.DELIVERED
    assert stored.delivered_at == T0 + timedelta(seconds=1) and stored.attempts == 1
    assert await store.claim_due(T0 + timedelta(days=1), limit=1, lease=LEASE) == []


async def test_dead_letters_are_listed_retried_and_dropped(store: Store) -> None:
    await queue(store, note(1), note(2), note(3))
    for d in await store.claim_due(T0, limit=3, lease=LEASE):
        await store.mark_dead(d.id, "HTTP 400 invalid_blocks", T0)
    dead = await store.list_outbox(DeliveryStatus.DEAD)
    assert len(dead) == 3 and {d.last_error for d in dead} == {"HTTP 400 invalid_blocks"}
    assert await store.claim_due(T0 + timedelta(days=1), limit=5, lease=LEASE) == []
    assert await store.retry_deliveries(note(1).delivery_id, T0 + LEASE) == 1
    retried = await store.get_delivery(note(1).delivery_id)
    assert retried is not None and retried.status is DeliveryStatus.PENDING
    assert retried.attempts == 0 and retried.next_attempt_at == T0 + LEASE
    assert await store.drop_deliveries(note(2).delivery_id) == 1
    assert await store.get_delivery(note(2).delivery_id) is None
    assert await store.retry_deliveries(None, T0) == 1
    assert await store.drop_deliveries(None) == 0
    assert len(await store.claim_due(T0 + LEASE, limit=5, lease=LEASE)) == 2


async def test_drop_all_discards_only_dead_letters(store: Store) -> None:
    await queue(store, note(1), note(2))
    [dead, alive] = await store.claim_due(T0, limit=2, lease=LEASE)
    await store.mark_dead(dead.id, "gone", T0)
    assert await store.drop_deliveries(None) == 1
    assert [x.id for x in await store.list_outbox()] == [alive.id]


async def test_retry_or_drop_of_unknown_delivery_counts_zero(store: Store) -> None:
    assert await store.retry_deliveries("msg_nope", T0) == 0
    assert await store.drop_deliveries("msg_nope") == 0
    assert await store.get_delivery("msg_nope") is None


async def test_release_claims_makes_leased_deliveries_due_again(store: Store) -> None:
    await queue(store, note(1), note(2))
    await store.claim_due(T0, limit=1, lease=timedelta(hours=1))
    await store.release_claims()
    claimed = await store.claim_due(T0, limit=5, lease=LEASE)
    assert len(claimed) == 2


async def test_outbox_stats_count_by_status_and_sink(store: Store) -> None:
    await queue(store, note(1), note(2, sink="pager"), note(3, sink="pager"), at=T0)
    await queue(store, note(4), at=T0 + LEASE)
    claimed = {d.notification.event_id: d for d in await store.claim_due(T0, 5, LEASE)}
    await store.mark_delivered(claimed["evt_1"].id, T0)
    await store.mark_dead(claimed["evt_2"].id, "x", T0)
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead, stats.delivered) == (2, 1, 1)
    assert stats.per_sink_pending == {"pager": 1, "slack": 1}
    # evt_3, the third row of its commit: rows of one commit are a microsecond apart.
    assert stats.oldest_pending == T0 + timedelta(microseconds=2)


async def test_list_outbox_filters_by_status_newest_first(store: Store) -> None:
    await queue(store, note(1), at=T0)
    await queue(store, note(2), at=T0 + LEASE)
    assert [d.notification.event_id for d in await store.list_outbox()] == ["evt_2", "evt_1"]
    assert await store.list_outbox(DeliveryStatus.DEAD) == []
    assert len(await store.list_outbox(limit=1)) == 1


async def test_restart_keeps_the_outbox_and_its_bookkeeping(url: str) -> None:
    async with opened(url) as store:
        await queue(store, note(1), note(2))
        [first, _] = await store.claim_due(T0, limit=2, lease=LEASE)
        await store.mark_retry(first.id, "timeout", T0 + LEASE)
    async with opened(url) as store:
        await store.release_claims()
        stored = await store.get_delivery(first.id)
        assert stored is not None and stored.attempts == 1 and stored.last_error == "timeout"
        assert len(await store.claim_due(T0 + LEASE, limit=5, lease=LEASE)) == 2


# --- SQLite only -------------------------------------------------------------------------------


def test_unknown_scheme_is_a_config_error_listing_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match=r"sqlite://.*postgresql://"):
        open_store("mysql://root@db/bridge")


async def test_sqlite_in_memory_store_works() -> None:
    store = open_store("sqlite:///:memory:")
    await store.open()
    try:
        await store.commit_poll(PollCommit(source="src", upserts=[tracked("a")]))
        assert list(await store.load_jobs("src")) == ["a"]
    finally:
        await store.close()


async def test_corrupt_sqlite_file_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text " * 200)
    store = open_store(f"sqlite:///{path}")
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert str(path) in str(caught.value) and "corrupt" in str(caught.value)


@pytest.mark.parametrize("where", ["missing-dir/state.db", "a-file/state.db"])
async def test_unopenable_sqlite_path_is_a_store_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("x")
    path = tmp_path / where
    store = open_store(f"sqlite:///{path}")
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert str(path) in str(caught.value) and "director" in str(caught.value)


async def test_sqlite_locked_past_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(str(path), busy_timeout=0.1)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked") as caught:
            await store.add_watch("src", "a")
        assert str(path) in str(caught.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
        await store.close()


async def test_sqlite_schema_newer_than_bridge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with opened(f"sqlite:///{path}"):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (schema.LATEST + 1,))
    conn.close()
    with pytest.raises(StoreError, match="upgrade bridge"):
        await open_store(f"sqlite:///{path}").open()


async def test_mark_delivered_many_records_each_in_one_go(store: Store) -> None:
    await queue(store, note(1), note(2), note(3))
    claimed = await store.claim_due(T0, limit=10, lease=LEASE)
    await store.mark_delivered_many([(d.id, T0 + timedelta(seconds=1)) for d in claimed[:2]])
    statuses = [(await store.get_delivery(d.id)) for d in claimed]
    assert [s.status for s in statuses if s] == [
        DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED, DeliveryStatus.PENDING]


async def test_a_later_row_of_a_job_waits_while_an_earlier_one_awaits_its_retry(
    store: Store,
) -> None:
    def of_job(n: int, job_id: str) -> Notification:
        return Notification(event_id=f"evt_{n}", rule="r", sink="slack", source="src",
                            job_id=job_id, payload={"text": f"{n}"}, on=EventKind.TRANSITION)

    first, second, other_job = of_job(1, "j"), of_job(2, "j"), of_job(9, "other")
    await queue(store, first, at=T0)
    await queue(store, second, other_job, at=T0 + timedelta(seconds=1))
    now = T0 + timedelta(seconds=2)
    claimed = await store.claim_due(now, limit=10, lease=LEASE)
    assert [d.notification.event_id for d in claimed] == ["evt_1", "evt_2", "evt_9"]
    await store.mark_retry(claimed[0].id, "HTTP 503", now + timedelta(seconds=30))
    await store.release_claims()
    again = await store.claim_due(now, limit=10, lease=LEASE)
    assert [d.notification.event_id for d in again] == ["evt_9"]
    later = await store.claim_due(now + timedelta(seconds=30), limit=10, lease=LEASE)
    assert [d.notification.event_id for d in later] == ["evt_1", "evt_2"]


async def test_release_gives_claimed_rows_back_with_their_attempts(store: Store) -> None:
    await queue(store, note(1))
    [d] = await store.claim_due(T0, limit=1, lease=LEASE)
    await store.release([d.id], T0 + timedelta(seconds=7))
    assert await store.claim_due(T0 + timedelta(seconds=6), limit=1, lease=LEASE) == []
    [again] = await store.claim_due(T0 + timedelta(seconds=7), limit=1, lease=LEASE)
    assert (again.id, again.attempts) == (d.id, 0)


async def test_retry_of_a_row_being_sent_does_nothing(store: Store) -> None:
    await queue(store, note(1))
    [d] = await store.claim_due(T0, limit=1, lease=LEASE)
    assert await store.retry_deliveries(d.id, T0) == 0
    assert await store.claim_due(T0, limit=1, lease=LEASE) == []


@pytest.mark.postgres
async def test_postgres_pool_recovers_from_a_killed_connection(tmp_path: Path) -> None:
    import psycopg

    from tests.store_fixtures import PG_URL

    async with store_url("postgresql", tmp_path) as pg, opened(
        pg + "&application_name=bridge_pool_test", pool_size=1
    ) as store:
        await store.ping()
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'bridge_pool_test'")
        waiters = [asyncio.create_task(store.ping()) for _ in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 10)
        # The one pooled connection is dead: the waiter that gets it fails (as a StoreError),
        # the pool forgets it, and the others get a new connection.
        failed = [r for r in results if r is not None]
        assert all(isinstance(r, StoreError) for r in failed), failed
        assert len(failed) <= 1, failed
        assert results.count(None) >= 2, results
        await asyncio.wait_for(store.ping(), 5)
