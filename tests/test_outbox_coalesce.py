"""Coalescing in the outbox (bridge.store.coalesce), on every backend: a newer row of a job's
Slack message takes the place of an earlier one still waiting unsent; terminal rows, thread
replies, claimed or attempted rows and rows of other messages are never superseded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.model import DeliveryStatus, EventKind, Notification
from bridge.store.base import PollCommit, Store
from bridge.store.sql import DELIVERED_KEEP
from tests.slack_delivery_support import delivering_to_fake_slack
from tests.store_fixtures import BACKENDS, opened, store_url
from tests.test_slack_urgency import until

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_url(request.param, tmp_path) as url, opened(url) as value:
        yield value


def row(job: str | None, state: str, *, sink: str = "ops-slack", coalesce: bool = True,
        rule: str = "jobs", thread_reply: bool = False) -> Notification:
    return Notification(event_id=f"evt_{job}_{state}", rule=rule, sink=sink, source="zendesk",
                        job_id=job, payload={"text": f"{job} {state}"},
                        on=EventKind.TRANSITION, state=state,
                        terminal=state in ("succeeded", "failed", "cancelled"),
                        coalesce=coalesce, thread_reply=thread_reply)


async def queue(store: Store, *rows: Notification, at: datetime = T0) -> None:
    await store.commit_poll(PollCommit(source="zendesk", notifications=rows, at=at))


async def statuses(store: Store) -> dict[str, str]:
    rows = await store.list_outbox(limit=1000)
    return {str(d.notification.payload["text"]): str(d.status) for d in rows}


async def test_a_waiting_row_is_superseded_by_a_newer_row_of_its_message(store: Store) -> None:
    await queue(store, row("a", "appeared"))
    await queue(store, row("a", "running"), at=T0 + timedelta(seconds=1))
    await queue(store, row("a", "succeeded"), at=T0 + timedelta(seconds=2))
    assert await statuses(store) == {"a appeared": "superseded", "a running": "superseded",
                                     "a succeeded": "pending"}
    [claimed] = await store.claim_due(T0 + timedelta(seconds=3), 10, LEASE)
    assert claimed.notification.payload["text"] == "a succeeded" and claimed.replaced == 1
    [gone, _] = await store.list_outbox(DeliveryStatus.SUPERSEDED)
    assert gone.last_error is not None and gone.last_error.startswith(
        f"superseded by {claimed.id}")
    stats = await store.outbox_stats()
    assert (stats.pending, stats.superseded, stats.delivered) == (1, 2, 0)


async def test_rows_of_one_commit_supersede_in_order_and_across_rules(store: Store) -> None:
    await queue(store, row("a", "appeared", rule="starts"), row("a", "running"),
                row("b", "appeared"))
    assert await statuses(store) == {"a appeared": "superseded", "a running": "pending",
                                     "b appeared": "pending"}


async def test_a_terminal_row_is_never_superseded(store: Store) -> None:
    await queue(store, row("a", "failed"))
    await queue(store, row("a", "running"), at=T0 + timedelta(seconds=1))
    assert await statuses(store) == {"a failed": "pending", "a running": "pending"}
    claimed = await store.claim_due(T0 + timedelta(seconds=2), 10, LEASE)
    assert [d.notification.payload["text"] for d in claimed] == ["a failed", "a running"]
    assert [d.replaced for d in claimed] == [0, 0]


async def test_a_claimed_or_attempted_row_is_not_superseded(store: Store) -> None:
    await queue(store, row("a", "appeared"), row("b", "appeared"))
    claimed = await store.claim_due(T0, 1, LEASE)
    assert [d.notification.job_id for d in claimed] == ["a"]
    [b] = await store.claim_due(T0, 1, LEASE)
    await store.mark_retry(b.id, "HTTP 500", T0 + timedelta(seconds=5))
    await queue(store, row("a", "running"), row("b", "running"), at=T0 + timedelta(seconds=1))
    assert set((await statuses(store)).values()) == {"pending"}


async def test_thread_replies_and_rows_of_other_messages_or_sinks_stay(store: Store) -> None:
    await queue(store, row("grp", "digest 1"), row("grp", "reply", thread_reply=True),
                row("a", "appeared", coalesce=False), row("b", "appeared", sink="pager"),
                row(None, "source down"))
    await queue(store, row("grp", "digest 2"), row("a", "running"), row("b", "running"),
                row(None, "source up"), at=T0 + timedelta(seconds=1))
    assert await statuses(store) == {
        "grp digest 1": "superseded", "grp reply": "pending", "grp digest 2": "pending",
        "a appeared": "pending", "a running": "pending", "b appeared": "pending",
        "b running": "pending", "None source down": "pending", "None source up": "pending"}


async def test_superseded_rows_are_pruned_with_the_delivered_ones(store: Store) -> None:
    await queue(store, row("a", "appeared"), row("a", "running"))
    later = T0 + DELIVERED_KEEP + timedelta(seconds=1)
    await queue(store, row("b", "appeared"), at=later)
    assert await statuses(store) == {"a running": "pending", "b appeared": "pending"}


async def test_a_backlog_behind_the_channel_budget_posts_each_job_once_in_its_latest_state(
        store: Store, tmp_path: Path) -> None:
    """Twenty jobs started; the sender holds the first batch (its calls are held by the fake
    Slack), the rest of the start rows wait in the outbox; then every job succeeds. Each job
    whose start row was still waiting gets one chat.postMessage saying it succeeded, and no
    chat.update."""
    one_post_at_a_time = {"post_per_second": 10, "post_burst": 1}
    delivering = delivering_to_fake_slack(store, tmp_path, rate_limits=one_post_at_a_time)
    async with delivering as (slack, workers, _):
        jobs = [f"job{i:02d}" for i in range(20)]
        slack.hold()
        await queue(store, *(row(job, "running") for job in jobs), at=datetime.now(UTC))
        workers.start()
        await until(lambda: slack.held > 0, "the first batch being sent")
        await queue(store, *(row(job, "succeeded") for job in jobs), at=datetime.now(UTC))
        waited = {d.notification.job_id
                  for d in await store.list_outbox(DeliveryStatus.SUPERSEDED)}
        assert len(waited) >= len(jobs) // 2  # most start rows were still in the outbox
        slack.release()

        def shown() -> dict[str, str]:
            return {str(m.text).split()[0]: str(m.text) for m in slack.roots("#ops")}

        await until(lambda: sorted(shown()) == jobs
                    and all(t.endswith("succeeded") for t in shown().values()),
                    "every job's message showing it succeeded", within=60)
    for job in waited:
        posts = [c for c in slack.calls_to("chat.postMessage")
                 if str(c.body["text"]).startswith(f"{job} ")]
        assert [c.body["text"] for c in posts] == [f"{job} succeeded"]
        assert not [c for c in slack.calls_to("chat.update")
                    if str(c.body["text"]).startswith(f"{job} ")]
    assert len(slack.roots("#ops")) == len(jobs)  # one root per job
    assert (await store.outbox_stats()).superseded == len(waited)


async def test_a_failure_that_took_a_waiting_posts_place_still_gets_its_thread_reply(
        store: Store, tmp_path: Path) -> None:
    async with delivering_to_fake_slack(store, tmp_path) as (slack, workers, _):
        now = datetime.now(UTC)
        await queue(store, row("a", "running"), at=now)
        await queue(store, row("a", "failed"), at=now + timedelta(microseconds=10))
        workers.start()
        await until(lambda: len(slack.calls_to("chat.postMessage")) == 2, "post and reply")
    [root] = slack.roots("#ops")
    assert root.text == "a failed" and root.edits == 0
    assert [r.text for r in slack.replies("#ops", root.ts)] == ["a failed"]
