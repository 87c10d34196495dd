"""Poll buckets in every store backend (SQLite, PostgreSQL): counts add up per source and
5-minute bucket, survive a reopen, add up across instances on one store, and are pruned;
and the batching writer (bridge.poll_counts) that feeds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.poll_counts import PollCounter
from bridge.store.base import Store
from bridge.store.poll_buckets import KEEP, PollBucket, bucket_of
from tests import store_fixtures
from tests.store_fixtures import opened

T0 = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


url = store_fixtures.backend_url


def counts(source: str, minutes: float, ok: int = 0, errors: int = 0,
           last_error: str | None = None) -> PollBucket:
    return PollBucket(source=source, start=T0 + timedelta(minutes=minutes), ok=ok,
                      errors=errors, last_error=last_error)


def test_a_bucket_is_the_five_minutes_a_time_falls_in() -> None:
    assert bucket_of(T0 + timedelta(minutes=7, seconds=59)) == T0 + timedelta(minutes=5)
    assert bucket_of(T0 + timedelta(minutes=10)) == T0 + timedelta(minutes=10)


async def test_counts_add_up_per_source_and_bucket(url: str) -> None:
    async with opened(url) as store:
        await store.add_poll_counts([counts("jtl", 0, ok=3), counts("zd", 1, ok=1)])
        await store.add_poll_counts([counts("jtl", 4, ok=2, errors=1, last_error="503"),
                                     counts("jtl", 5, ok=1)])
        assert await store.poll_buckets(T0, "jtl") == [
            counts("jtl", 0, ok=5, errors=1, last_error="503"), counts("jtl", 5, ok=1)]
        assert [(b.source, b.polls) for b in await store.poll_buckets(T0)] == [
            ("jtl", 6), ("jtl", 1), ("zd", 1)]


async def test_the_last_error_of_a_bucket_stays_until_a_newer_one(url: str) -> None:
    async with opened(url) as store:
        await store.add_poll_counts([counts("jtl", 0, errors=1, last_error="timeout")])
        await store.add_poll_counts([counts("jtl", 1, ok=1)])
        [kept] = await store.poll_buckets(T0)
        assert kept.last_error == "timeout"
        await store.add_poll_counts([counts("jtl", 2, errors=1, last_error="HTTP 503")])
        [newer] = await store.poll_buckets(T0)
        assert newer.last_error == "HTTP 503"


async def test_poll_buckets_survive_a_reopen(url: str) -> None:
    async with opened(url) as store:
        await store.add_poll_counts([counts("jtl", 0, ok=4, errors=2, last_error="503")])
    async with opened(url) as again:
        assert await again.poll_buckets(T0) == [counts("jtl", 0, ok=4, errors=2,
                                                       last_error="503")]


async def test_two_instances_on_one_store_add_to_the_same_buckets(url: str) -> None:
    async with opened(url) as first, opened(url) as second:
        await first.add_poll_counts([counts("jtl", 0, ok=2)])
        await second.add_poll_counts([counts("jtl", 3, ok=1, errors=1, last_error="503")])
        for store in (first, second):
            assert await store.poll_buckets(T0) == [counts("jtl", 0, ok=3, errors=1,
                                                           last_error="503")]


async def test_buckets_before_the_prune_time_are_dropped(url: str) -> None:
    async with opened(url) as store:
        await store.add_poll_counts([counts("jtl", 0, ok=1), counts("jtl", 60, ok=1)])
        await store.add_poll_counts([], prune_before=T0 + timedelta(minutes=30))
        assert await store.poll_buckets(T0) == [counts("jtl", 60, ok=1)]


async def test_poll_buckets_start_at_the_bucket_holding_since(url: str) -> None:
    async with opened(url) as store:
        await store.add_poll_counts([counts("jtl", 0, ok=1), counts("jtl", 5, ok=2),
                                     counts("jtl", 10, ok=3)])
        since = T0 + timedelta(minutes=7)
        assert [b.ok for b in await store.poll_buckets(since)] == [2, 3]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def stored(store: Store) -> list[tuple[str, int, int]]:
    return [(b.source, b.ok, b.errors) for b in await store.poll_buckets(T0 - KEEP)]


async def test_the_counter_writes_nothing_until_it_flushes_then_everything_at_once(
        url: str) -> None:
    async with opened(url) as store:
        clock = Clock()
        counter = PollCounter(store, clock)
        for n in range(10):
            counter.add("jtl", T0 + timedelta(seconds=10 * n),
                        "HTTP 503" if n % 5 == 0 else None)
        counter.add("zd", T0)
        assert await stored(store) == []
        await counter.flush()
        assert await stored(store) == [("jtl", 8, 2), ("zd", 1, 0)]
        await counter.flush()  # nothing new: nothing added twice
        assert await stored(store) == [("jtl", 8, 2), ("zd", 1, 0)]


async def test_the_counter_writes_the_rest_when_it_stops(url: str) -> None:
    async with opened(url) as store:
        counter = PollCounter(store, Clock())
        counter.start()
        counter.add("jtl", T0, "timeout")
        await counter.stop()
    async with opened(url) as again:
        assert await stored(again) == [("jtl", 0, 1)]


async def test_the_counter_prunes_buckets_older_than_the_retention(url: str) -> None:
    async with opened(url) as store:
        await store.add_poll_counts([counts("jtl", 0, ok=1), counts("jtl", 60, ok=1)])
        clock = Clock()
        clock.now = T0 + KEEP + timedelta(minutes=30)
        await PollCounter(store, clock).flush()
        assert [b.start for b in await store.poll_buckets(T0)] == [T0 + timedelta(hours=1)]
