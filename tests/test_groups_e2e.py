"""Grouping end to end: a real `Bridge` (SQLite in a tmp dir) polling a Zendesk simulator,
delivering digests to a fake Slack and a webhook receiver over real sockets. The bridge's
clock is the test's: polls and flushes are driven by the test, never by sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import load_config
from bridge.model import DeliveryStatus
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from tests.config_support import rule, slack_sink
from tests.crash_support import (
    EMAIL,
    SECRET,
    TOKEN,
    eventually,
    webhook_sink,
    write_config,
    zendesk_source,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHANNEL = "C0OPS"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as sim:
        yield sim


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels={"#ops": CHANNEL}, limits=None) as fake:
        yield fake


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=SECRET) as hook:
        yield hook


def failures_config(tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
                    receiver: WebhookReceiver, *parts: str, broadcast: bool | None = None,
                    **failures: object) -> Path:
    """Zendesk polled only when the test says; its failures sent by the rule `failures`
    (with the fields `failures`) to the fake Slack and the receiver; then `parts`."""
    return write_config(
        tmp_path, zendesk_source(zendesk, interval="1h"),
        slack_sink(slack.api_url, token=slack.token, min_interval="1ms",
                   reply_broadcast=broadcast),
        webhook_sink(receiver.url),
        rule("failures", notify=["ops-slack", "pager"], to=["failed"], **failures), *parts)


def config(tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack, receiver: WebhookReceiver,
           *, broadcast: bool = False) -> Path:
    return failures_config(tmp_path, zendesk, slack, receiver, broadcast=broadcast,
                           group_by=["source"], group_wait="10s", group_interval="1m")


async def started(path: Path, clock: Clock) -> Bridge:
    """A bridge whose start-up poll is done: the test owns every later poll."""
    polled = asyncio.Event()
    bridge = Bridge(load_config(path), serve_http=False, drain_timeout=2.0, clock=clock,
                    observers=[lambda outcome: polled.set()])
    await bridge.__aenter__()
    async with asyncio.timeout(10):
        await polled.wait()
    return bridge


async def fail(bridge: Bridge, zendesk: ZendeskSimulator, *job_ids: str) -> None:
    for job_id in job_ids:
        zendesk.set_job(job_id, status="failed", message=f"{job_id} ran out of paper")
    outcome = await bridge.pipeline.poll("zendesk")
    assert len(outcome.events) == len(job_ids) and not outcome.notifications


def jobs(prefix: str, count: int, zendesk: ZendeskSimulator) -> list[str]:
    return [zendesk.add_job(f"{prefix}{i:02d}", status="working") for i in range(count)]


async def flush(bridge: Bridge) -> int:
    """Flush what is due now (the flusher's own loop may have done it already) and count the
    digests queued so far."""
    await bridge.flusher.flush_due()
    rows = await bridge.store.list_outbox()
    return sum(1 for row in rows if row.notification.digest)


async def recorded(bridge: Bridge) -> None:
    """Wait until every queued digest is recorded as sent. Slack has seen the last call a
    little before the outbox row is marked delivered; a clock jump past the row's claim lease
    (60 s, on the injected clock) in between would make it due again and send it twice."""
    async def none_pending() -> bool:
        return not await bridge.store.list_outbox(DeliveryStatus.PENDING)

    await eventually(none_pending, within=10, what="the digests recorded as delivered")


def thread_replies(slack: FakeSlack, root_ts: str) -> list[str]:
    return [str(m.text) for m in slack.replies(CHANNEL, root_ts)]


async def test_forty_failures_within_group_wait_are_one_digest_with_a_thread_reply_each(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    ids = jobs("job-", 45, zendesk)
    clock = Clock()
    bridge = await started(config(tmp_path, zendesk, slack, receiver, broadcast=True), clock)
    try:
        await fail(bridge, zendesk, *ids[:25])
        clock.advance(6)
        await fail(bridge, zendesk, *ids[25:40])
        clock.advance(3.9)  # 9.9 s after the first failure: still collecting
        assert await flush(bridge) == 0
        clock.advance(0.1)
        assert await flush(bridge) == 2  # one digest per sink
        assert await flush(bridge) == 2  # never twice
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 41, within=10)
        [root] = slack.roots(CHANNEL)
        assert "40 jobs" in str(root.text) and "❌ 40 failed" in str(root.text)
        replies = thread_replies(slack, root.ts)
        assert len(replies) == 40 and all("ran out of paper" in r for r in replies)
        assert sorted(r.split("|", 1)[1].split(">", 1)[0] for r in replies) == ids[:40]
        posts = slack.calls_to("chat.postMessage")
        assert all(c.body.get("reply_broadcast") is True for c in posts if "thread_ts" in c.body)
        await receiver.wait_for(lambda: len(receiver.requests) == 1)
        [first] = receiver.requests
        body = first.json()
        assert first.verified and body["type"] == "job.group"
        assert body["data"]["group"] == {"source": "zendesk"} and body["data"]["flush"] == 1
        assert len(body["data"]["events"]) == 40 and body["data"]["counts"] == {"failed": 40}
        await recorded(bridge)

        # More failures inside group_interval: the same message, edited once the interval
        # has passed, a reply for each new failure, and a second POST with the whole group.
        clock.advance(20)
        await fail(bridge, zendesk, *ids[40:])
        clock.advance(39.9)
        assert await flush(bridge) == 2
        clock.advance(0.1)
        assert await flush(bridge) == 4
        await slack.wait_for(lambda: len(thread_replies(slack, root.ts)) == 45, within=10)
        await receiver.wait_for(lambda: len(receiver.requests) == 2)
        assert slack.roots(CHANNEL) == [root] and root.edits == 1
        assert "45 jobs" in str(root.text)
        second = receiver.requests[1].json()["data"]
        assert (second["flush"], len(second["events"]), second["new_events"]) == (2, 45, 5)
        assert len(set(receiver.delivered_ids())) == 2
        await recorded(bridge)

        # An interval with nothing new closes the group; the next failure opens a new one.
        clock.advance(60)
        assert await flush(bridge) == 4
        assert await bridge.store.open_groups() == []
        zendesk.add_job("late", status="working")
        await bridge.pipeline.poll("zendesk")
        await fail(bridge, zendesk, "late")
        clock.advance(10)
        assert await flush(bridge) == 6
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 2, within=10)
    finally:
        await bridge.__aexit__(None, None, None)
    assert len(slack.calls_to("chat.update")) == 1


async def test_a_group_survives_restarts_before_and_after_its_first_digest(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    ids = jobs("job-", 40, zendesk)
    clock = Clock()
    path = config(tmp_path, zendesk, slack, receiver)
    bridge = await started(path, clock)
    try:
        await fail(bridge, zendesk, *ids[:20])
    finally:
        await bridge.__aexit__(None, None, None)  # stopped mid-group, before group_wait
    clock.advance(10)
    bridge = await started(path, clock)
    try:
        assert await flush(bridge) == 2  # due while it was down: flushed on start
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 21, within=10)
        await receiver.wait_for(lambda: len(receiver.requests) == 1)
    finally:
        await bridge.__aexit__(None, None, None)
    [root] = slack.roots(CHANNEL)
    assert "20 jobs" in str(root.text)
    clock.advance(30)
    bridge = await started(path, clock)
    try:
        # Restarted inside group_interval: the group is not due again yet.
        assert await flush(bridge) == 2
        await fail(bridge, zendesk, *ids[20:])
        clock.advance(30)
        assert await flush(bridge) == 4
        await slack.wait_for(lambda: len(thread_replies(slack, root.ts)) == 40, within=10)
        await receiver.wait_for(lambda: len(receiver.requests) == 2)
    finally:
        await bridge.__aexit__(None, None, None)
    assert slack.roots(CHANNEL) == [root] and root.edits == 1 and "40 jobs" in str(root.text)
    assert len(slack.calls_to("chat.postMessage")) == 41  # one root, 40 replies, no repeat
    flushes = [r.json()["data"]["flush"] for r in receiver.requests]
    assert flushes == [1, 2] and all(r.verified for r in receiver.requests)


async def test_post_mode_posts_each_flush_and_a_group_with_running_jobs_stays_open(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    path = config(tmp_path, zendesk, slack, receiver)
    text = path.read_text().replace('mode = "update"', 'mode = "post"').replace(
        'to = ["failed"]\n', "")
    path.write_text(text)
    zendesk.add_job("slow", status="queued")
    clock = Clock()
    bridge = await started(path, clock)
    try:
        zendesk.set_job("slow", status="working")
        await bridge.pipeline.poll("zendesk")
        clock.advance(10)
        assert await flush(bridge) == 2
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 1, within=10)
        await recorded(bridge)
        # Nothing new for an interval, but the job still runs: the group stays open.
        clock.advance(60)
        assert await flush(bridge) == 2
        [still] = await bridge.store.open_groups()
        assert still.flushes == 1
        zendesk.set_job("slow", status="completed")
        await bridge.pipeline.poll("zendesk")
        clock.advance(60)
        assert await flush(bridge) == 4
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 2, within=10)
        await recorded(bridge)
        clock.advance(60)
        await flush(bridge)
        assert await bridge.store.open_groups() == []  # finished and quiet: closed
    finally:
        await bridge.__aexit__(None, None, None)
    first, second = slack.roots(CHANNEL)
    assert "🔄 1 running" in str(first.text) and "✅ 1 succeeded" in str(second.text)
    assert slack.calls_to("chat.update") == [] and slack.replies(CHANNEL, second.ts) == []


async def test_a_thread_reply_that_failed_after_others_went_out_is_the_only_one_sent_again(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    ids = jobs("job-", 6, zendesk)
    clock = Clock()
    bridge = await started(config(tmp_path, zendesk, slack, receiver), clock)

    def fourth_reply(method: str, body: Mapping[str, Any]) -> bool:
        replies = [c for c in slack.calls_to("chat.postMessage") if "thread_ts" in c.body]
        return method == "chat.postMessage" and "thread_ts" in body and len(replies) == 3

    slack.fail(when=fourth_reply)  # a 500 on the fourth reply, after three went through
    try:
        await fail(bridge, zendesk, *ids)
        clock.advance(10)
        assert await flush(bridge) == 2

        async def retrying() -> bool:
            waiting = await bridge.store.list_outbox(DeliveryStatus.PENDING)
            return any(d.attempts == 1 for d in waiting)

        await eventually(retrying, within=10, what="the failed reply's retry")
        # Only replies wait: the failed one, and any after it (a job's rows keep their order).
        waiting = await bridge.store.list_outbox(DeliveryStatus.PENDING)
        assert waiting and all(d.notification.thread_reply for d in waiting)
        assert sorted(d.attempts for d in waiting)[-2:] in ([0, 1], [1])
        [root] = slack.roots(CHANNEL)
        assert len(thread_replies(slack, root.ts)) == 6 - len(waiting)
        clock.advance(10)  # past the reply's retry time (5 s)
        bridge.workers.wake()
        await slack.wait_for(lambda: len(thread_replies(slack, root.ts)) == 6, within=10)
        await recorded(bridge)
    finally:
        await bridge.__aexit__(None, None, None)
    replies = thread_replies(slack, root.ts)
    assert sorted(r.split("|", 1)[1].split(">", 1)[0] for r in replies) == ids  # each once
    assert len(slack.calls_to("chat.postMessage")) == 7  # the digest and six replies
    assert slack.calls_to("chat.update") == []  # the digest was not sent again either
