"""Delivery end to end (contract sections 6 and 7): outbox -> workers -> real sinks.

Most tests run a real `Bridge` in the test's event loop (SQLite in a tmp dir, no HTTP
server) against a Zendesk simulator, webhook receivers and a fake Slack over real sockets;
polls are driven by the test (the source interval is an hour). The graceful-shutdown tests
run `python -m bridge run` as a child process and signal it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.cli import main as cli_main
from bridge.config import load_config
from bridge.model import DeliveryStatus, EventKind, Notification
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import Reply, WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.store.base import PollCommit
from tests.config_support import slack_sink
from tests.crash_support import (
    EMAIL,
    SECRET,
    SINK,
    TOKEN,
    BridgeProcess,
    all_deliveries,
    eventually,
    opened,
    state_url,
    transition_rule,
    webhook_sink,
    write_config,
    zendesk_source,
)

SLACK_TOKEN = "xoxb-fake-token"


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as sim:
        yield sim


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=SECRET) as hook:
        yield hook


def in_process_config(tmp_path: Path, zendesk: ZendeskSimulator, *parts: str) -> Path:
    return write_config(tmp_path, zendesk_source(zendesk, interval="1h"), *parts)


async def running(config: Path) -> Bridge:
    """A started bridge whose start-up poll is done, so the test owns every later poll."""
    polled = asyncio.Event()
    bridge = Bridge(load_config(config), serve_http=False, drain_timeout=1.0,
                    observers=[lambda outcome: polled.set()])
    await bridge.__aenter__()
    try:
        async with asyncio.timeout(10):
            await polled.wait()
    except BaseException:
        await bridge.__aexit__(None, None, None)
        raise
    return bridge


async def transition(bridge: Bridge, zendesk: ZendeskSimulator, job_id: str, status: str) -> None:
    zendesk.set_job(job_id, status=status)
    outcome = await bridge.pipeline.poll("zendesk")
    assert any(e.on is EventKind.TRANSITION for e in outcome.events), outcome


async def outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`bridge outbox ARGS` against the test's state file, as a user would run it."""
    capsys.readouterr()
    code = await asyncio.to_thread(
        cli_main, ["outbox", "--config", str(tmp_path / "rules.toml"), *args])
    out = capsys.readouterr()
    return code, out.out + out.err


# --- retries ------------------------------------------------------------------------------


async def test_a_receiver_down_for_several_retries_gets_the_notification_once_it_is_back(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    await receiver.stop()
    zendesk.add_job("job-a", status="working")
    config = in_process_config(tmp_path, zendesk, webhook_sink(receiver.url, schedule="100ms"),
                               transition_rule("pager"))
    bridge = await running(config)
    try:
        await transition(bridge, zendesk, "job-a", "failed")

        async def retried_thrice() -> bool:
            rows = await bridge.store.list_outbox(DeliveryStatus.PENDING)
            return bool(rows) and rows[0].attempts >= 3

        await eventually(retried_thrice, within=10, what="three failed attempts")
        await receiver.start()
        await eventually(lambda: all_delivered(bridge, 1), within=10, what="delivery")
        [row] = await all_deliveries(bridge.store)
    finally:
        await bridge.__aexit__(None, None, None)
    assert receiver.delivered_ids() == [row.id]
    assert row.attempts >= 4
    assert "ClientConnectorError" in (row.last_error or "")


async def test_a_jobs_later_rows_follow_its_failed_row_at_its_retry_not_after_the_lease(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    config = in_process_config(tmp_path, zendesk, webhook_sink(receiver.url, schedule="100ms"),
                               transition_rule("pager"))
    ids = await queue_rows(config, job_id="job-a", count=3)
    receiver.script([503])
    bridge = await running(config)
    try:
        # The claim lease is a minute: only a held-back row that became due with its
        # predecessor's retry arrives this soon.
        await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 3, within=5)
    finally:
        await bridge.__aexit__(None, None, None)
    assert [r.webhook_id for r in receiver.requests] == [ids[0], *ids]
    assert [r.status for r in receiver.requests] == [503, 200, 200, 200]


async def all_delivered(bridge: Bridge, count: int) -> bool:
    rows = await all_deliveries(bridge.store)
    return len(rows) == count and all(r.status is DeliveryStatus.DELIVERED for r in rows)


async def queue_rows(config: Path, *, job_id: str, count: int, sink: str = "pager") -> list[str]:
    """Commit `count` notifications of one job straight to the outbox, oldest first."""
    notifications = [
        Notification(event_id=f"evt_{job_id}_{n}", rule="any-transition", sink=sink,
                     source="zendesk", job_id=job_id, on=EventKind.TRANSITION,
                     payload={"text": f"step {n}",
                              "body": json.dumps({"data": {"event_id": f"evt_{job_id}_{n}"}})})
        for n in range(count)
    ]
    start = datetime.now(UTC) - timedelta(seconds=1)
    async with opened(state_url(config)) as store:
        for n, notification in enumerate(notifications):
            await store.commit_poll(PollCommit(source="zendesk", notifications=[notification],
                                               at=start + timedelta(milliseconds=n)))
    return [n.delivery_id for n in notifications]


async def test_a_sink_that_keeps_failing_does_not_hold_back_another(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    async with WebhookReceiver(secret=SECRET) as broken:
        broken.script([], then=503)
        for n in range(5):
            zendesk.add_job(f"job-{n}", status="working")
        config = in_process_config(
            tmp_path, zendesk,
            webhook_sink(broken.url, name="broken", schedule="50ms"),
            webhook_sink(receiver.url),
            transition_rule("broken", "pager"))
        bridge = await running(config)
        try:
            for n in range(5):
                await transition(bridge, zendesk, f"job-{n}", "completed")
            await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 5, within=5)
            await broken.wait_for(lambda: len(broken.requests) >= 10, within=5)

            # The receiver answering is not the row being marked delivered: that is recorded
            # in the background, so wait for the store to say so before reading what is left.
            async def receivers_rows_recorded() -> bool:
                delivered = await bridge.store.list_outbox(DeliveryStatus.DELIVERED)
                return sum(d.notification.sink == SINK for d in delivered) == 5

            await eventually(receivers_rows_recorded, within=5,
                             what="the receiver's 5 deliveries recorded")
            pending = await bridge.store.list_outbox(DeliveryStatus.PENDING)
        finally:
            await bridge.__aexit__(None, None, None)
    assert {d.notification.sink for d in pending} == {"broken"}
    assert len(pending) == 5


# --- dead letters -------------------------------------------------------------------------


async def test_a_permanent_4xx_is_dead_lettered_at_once_and_delivered_after_outbox_retry(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.script([404])
    zendesk.add_job("job-a", status="working")
    config = in_process_config(tmp_path, zendesk, webhook_sink(receiver.url),
                               transition_rule("pager"))
    bridge = await running(config)
    try:
        await transition(bridge, zendesk, "job-a", "failed")

        async def dead() -> bool:
            return bool(await bridge.store.list_outbox(DeliveryStatus.DEAD))

        await eventually(dead, within=5, what="a dead letter")
        [row] = await bridge.store.list_outbox(DeliveryStatus.DEAD)
        code, listing = await outbox(tmp_path, capsys)
        assert code == 0
        code, retried = await outbox(tmp_path, capsys, "retry", row.id)
        await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 1, within=5)
    finally:
        await bridge.__aexit__(None, None, None)
    assert row.attempts == 1
    assert row.id in listing
    assert re.search(rf"{row.id}\s+dead\s+pager\s+zendesk/job-a\s+\S+\s+1\s+.*HTTP 404", listing)
    assert (code, retried.strip()) == (0, "re-queued 1 delivery")
    assert [r.status for r in receiver.requests] == [404, 200]
    assert receiver.delivered_ids() == [row.id]


async def test_outbox_retry_all_requeues_every_dead_letter_and_they_are_delivered(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.script([410, 404])
    zendesk.add_job("job-a", status="working")
    zendesk.add_job("job-b", status="working")
    config = in_process_config(tmp_path, zendesk, webhook_sink(receiver.url),
                               transition_rule("pager"))
    bridge = await running(config)
    try:
        await transition(bridge, zendesk, "job-a", "killed")
        await transition(bridge, zendesk, "job-b", "completed")

        async def two_dead() -> bool:
            return len(await bridge.store.list_outbox(DeliveryStatus.DEAD)) == 2

        await eventually(two_dead, within=5, what="two dead letters")
        code, retried = await outbox(tmp_path, capsys, "retry", "--all")
        await eventually(lambda: all_delivered(bridge, 2), within=5, what="two deliveries")
        rows = await all_deliveries(bridge.store)
    finally:
        await bridge.__aexit__(None, None, None)
    assert (code, retried.strip()) == (0, "re-queued 2 deliveries")
    assert {r.status for r in rows} == {DeliveryStatus.DELIVERED}


# --- Slack --------------------------------------------------------------------------------


async def test_slack_answering_429_gets_every_message_in_order_per_job_after_the_wait(
    tmp_path: Path, zendesk: ZendeskSimulator
) -> None:
    lifecycles = {"job-a": ["working", "failed"], "job-b": ["working", "completed"],
                  "job-c": ["working", "killed"]}
    finals = {"job-a": "failed", "job-b": "succeeded", "job-c": "cancelled"}
    for job_id in lifecycles:
        zendesk.add_job(job_id, status="queued")
    async with FakeSlack(token=SLACK_TOKEN, channels={"#ops": "C0OPS"}, limits=None) as slack:
        config = in_process_config(tmp_path, zendesk,
                                   slack_sink(slack.api_url, token=SLACK_TOKEN, mode="post",
                                              min_interval="20ms",
                                              retry={"schedule": ["200ms"], "attempts": 50}),
                                   transition_rule("ops-slack"))
        bridge = await running(config)
        try:
            slack.rate_limit(4, retry_after="0.5")
            limited_at = time.monotonic()
            for step in range(2):
                for job_id, statuses in lifecycles.items():
                    await transition(bridge, zendesk, job_id, statuses[step])
            await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 6, within=15)
            waited = time.monotonic() - limited_at
        finally:
            await bridge.__aexit__(None, None, None)
        texts = [str(c.body.get("text")) for c in slack.calls_to("chat.postMessage")]
        limited = [c for c in slack.calls if c.status == 429]
    assert len(limited) == 4
    assert waited >= 0.5
    for job_id in lifecycles:
        mine = [t for t in texts if job_id in t]
        assert len(mine) == 2, texts
        assert "pending → *running*" in mine[0]
        assert f"running → *{finals[job_id]}*" in mine[1]


# --- graceful shutdown (a child process) --------------------------------------------------


def child_config(tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver) -> Path:
    """Zendesk polled every 200 ms, every transition sent to the receiver's `pager`."""
    return write_config(tmp_path, zendesk_source(zendesk), webhook_sink(receiver.url),
                        transition_rule("pager"))


async def polling(bridge: BridgeProcess, zendesk: ZendeskSimulator) -> None:
    """Until the child bridge runs and has polled Zendesk twice."""
    await bridge.wait_for_log("bridge running")

    async def polled_twice() -> bool:
        return zendesk.request_count() >= 2

    await eventually(polled_twice, within=10, what="two polls")


async def test_sigterm_stops_polling_drains_within_the_timeout_and_keeps_the_rest_pending(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    await receiver.stop()
    zendesk.add_job("job-a", status="working")
    config = child_config(tmp_path, zendesk, receiver)
    bridge = await BridgeProcess(config, drain_timeout=1.0).start()
    try:
        await polling(bridge, zendesk)
        zendesk.set_job("job-a", status="failed")
        await bridge.wait_for_log("failed (attempt 2)")
        bridge.terminate()
        stopped_at, polls = time.monotonic(), zendesk.request_count()
        code = await bridge.wait(within=10)
        took = time.monotonic() - stopped_at
    finally:
        await bridge.aclose()
    assert code == 0, bridge.log()
    assert took < 1.0 + 2.0
    assert zendesk.request_count() - polls <= 1  # a poll under way may finish
    async with opened(state_url(config)) as store:
        [row] = await all_deliveries(store)
    assert row.status is DeliveryStatus.PENDING
    assert row.attempts >= 2

    await receiver.start()
    again = await BridgeProcess(config).start()
    try:
        await receiver.wait_for(lambda: receiver.delivered_ids() == [row.id], within=10)
        again.terminate()
        assert await again.wait() == 0
    finally:
        await again.aclose()


async def test_sigterm_waits_for_deliveries_under_way_before_exiting(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    receiver.script([], then=Reply(status=200, delay=0.8))
    for n in range(3):
        zendesk.add_job(f"job-{n}", status="working")
    config = child_config(tmp_path, zendesk, receiver)
    bridge = await BridgeProcess(config, drain_timeout=5.0).start()
    try:
        await polling(bridge, zendesk)
        for n in range(3):
            zendesk.set_job(f"job-{n}", status="completed")
        await receiver.wait_for(lambda: len(receiver.requests) == 3, within=10)
        bridge.terminate()
        code = await bridge.wait(within=10)
    finally:
        await bridge.aclose()
    assert code == 0, bridge.log()
    async with opened(state_url(config)) as store:
        rows = await all_deliveries(store)
    assert [r.status for r in rows] == [DeliveryStatus.DELIVERED] * 3
    assert len(receiver.requests) == 3


async def test_a_second_sigterm_exits_at_once_and_leaves_the_rows_pending(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    await receiver.stop()
    zendesk.add_job("job-a", status="working")
    config = child_config(tmp_path, zendesk, receiver)
    bridge = await BridgeProcess(config, drain_timeout=60.0).start()
    try:
        await polling(bridge, zendesk)
        zendesk.set_job("job-a", status="failed")
        await bridge.wait_for_log("failed (attempt 1)")
        bridge.terminate()
        await bridge.wait_for_log("stopping: draining")
        bridge.terminate()
        second_at = time.monotonic()
        code = await bridge.wait(within=10)
        took = time.monotonic() - second_at
    finally:
        await bridge.aclose()
    assert code != 0
    assert took < 2.0
    async with opened(state_url(config)) as store:
        [row] = await all_deliveries(store)
    assert row.status is DeliveryStatus.PENDING


async def test_sigint_stops_a_bridge_like_sigterm(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    config = child_config(tmp_path, zendesk, receiver)
    bridge = await BridgeProcess(config).start()
    try:
        await bridge.wait_for_log("bridge running")
        bridge.send(signal.SIGINT)
        code = await bridge.wait(within=10)
    finally:
        await bridge.aclose()
    assert code == 0, bridge.log()
