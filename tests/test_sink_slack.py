"""The Slack sink through slack_sdk against FakeSlack on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import SlackSink
from bridge.errors import PermanentDelivery, RetryableDelivery, StoreError
from bridge.model import Delivery, EventKind, Notification
from bridge.simulators.slack import WEBHOOK_CHANNEL, FakeSlack
from bridge.sinks import build_sink
from bridge.sinks.slack import SlackNotifier
from bridge.sinks.slack_sender import ChannelSender, RateLimited
from bridge.store import open_store
from bridge.store.base import MessageRef, Store
from tests import store_fixtures

CHANNEL = "#ops"
CHANNEL_ID = "C0OPS"
_events = itertools.count(1)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels={CHANNEL: CHANNEL_ID}) as fake:
        yield fake


store = store_fixtures.sqlite_store


async def stored_ref(store: Store, job: str = "8b72") -> MessageRef | None:
    return await store.get_message_ref("ops-slack", "zendesk", job)


SinkFactory = Callable[..., SlackNotifier]


@pytest.fixture
async def sinks(
    slack: FakeSlack, session: aiohttp.ClientSession, store: Store
) -> AsyncIterator[SinkFactory]:
    made: list[SlackNotifier] = []

    def make(mode: str = "post", *, clock: Callable[[], float] | None = None,
             **settings: Any) -> SlackNotifier:
        config = SlackSink.model_validate({
            "name": "ops-slack", "kind": "slack", "token": slack.token, "channel": CHANNEL,
            "mode": mode, "base_url": slack.api_url, "min_interval": "10ms", **settings,
        })
        if clock is None:
            sink = build_sink(config, session, store)
        else:
            sink = SlackNotifier(config, session, store, clock=clock)
        assert isinstance(sink, SlackNotifier)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def note(text: str, *, job: str | None = "8b72", state: str = "running",
         terminal: bool = False, blocks: list[dict[str, Any]] | None = None) -> Delivery:
    payload: dict[str, Any] = {"text": text} | ({"blocks": blocks} if blocks else {})
    notification = Notification(
        event_id=f"evt_{next(_events)}", rule="jobs", sink="ops-slack", source="zendesk",
        job_id=job, payload=payload, on=EventKind.TRANSITION, terminal=terminal, state=state,
    )
    return Delivery(id=notification.delivery_id, notification=notification,
                    created_at=datetime.now(UTC))


async def until(predicate: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Let the queued tasks run until `predicate` holds; fail naming `what` if it never does."""
    for _ in range(int(within / 0.001)):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out after {within:g}s waiting for {what}")


def texts(messages: list[Any]) -> list[str]:
    return [m.text for m in messages]


# --- modes ------------------------------------------------------------------------------


async def test_post_mode_posts_one_message_per_notification(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("post")
    await sink.send(note("job started"))
    await sink.send(note("job at 50%"))
    assert texts(slack.roots(CHANNEL)) == ["job started", "job at 50%"]


async def test_update_mode_edits_the_jobs_message_in_place(
    slack: FakeSlack, sinks: SinkFactory, store: Store
) -> None:
    sink = sinks("update")
    await sink.send(note("running 25%"))
    await sink.send(note("running 50%"))
    await sink.send(note("succeeded", state="succeeded", terminal=True))
    [message] = slack.roots(CHANNEL)
    assert (message.text, message.edits, message.replies) == ("succeeded", 2, [])
    assert await stored_ref(store) == MessageRef(channel=CHANNEL_ID, ts=message.ts)


async def test_update_mode_keeps_one_message_per_job(slack: FakeSlack, sinks: SinkFactory) -> None:
    sink = sinks("update")
    await sink.send(note("a running", job="a"))
    await sink.send(note("b running", job="b"))
    await sink.send(note("a done", job="a", state="succeeded", terminal=True))
    assert texts(slack.roots(CHANNEL)) == ["a done", "b running"]


@pytest.mark.parametrize("state", ["failed", "cancelled"])
async def test_update_mode_alerts_with_a_thread_reply_when_the_job_fails(
    slack: FakeSlack, sinks: SinkFactory, state: str
) -> None:
    sink = sinks("update")
    await sink.send(note("running 40%"))
    await sink.send(note(f"{state}: printer on fire", state=state, terminal=True))
    [message] = slack.roots(CHANNEL)
    assert message.text == f"{state}: printer on fire"
    assert texts(slack.replies(CHANNEL, message.ts)) == [f"{state}: printer on fire"]


async def test_update_mode_does_not_reply_when_the_first_message_is_the_failure(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    await sinks("update").send(note("failed at once", state="failed", terminal=True))
    [message] = slack.roots(CHANNEL)
    assert message.replies == []


async def test_thread_mode_replies_under_the_first_message(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("thread")
    await sink.send(note("started"))
    await sink.send(note("50%"))
    await sink.send(note("done", state="succeeded", terminal=True))
    [root] = slack.roots(CHANNEL)
    assert root.text == "started"
    assert texts(slack.replies(CHANNEL, root.ts)) == ["50%", "done"]


async def test_events_without_a_job_are_posted_on_their_own_in_update_mode(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("update")
    await sink.send(note("zendesk is down", job=None))
    await sink.send(note("zendesk is up", job=None))
    assert texts(slack.roots(CHANNEL)) == ["zendesk is down", "zendesk is up"]


async def test_the_message_ref_survives_a_restart(
    slack: FakeSlack, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config = SlackSink.model_validate({
        "name": "ops-slack", "kind": "slack", "token": slack.token, "channel": CHANNEL,
        "mode": "update", "base_url": slack.api_url, "min_interval": "10ms",
    })
    for text in ("running", "succeeded"):  # each round is a fresh process: store and sink
        store = open_store(f"sqlite:///{tmp_path}/state.db")
        await store.open()
        sink = SlackNotifier(config, session, store)
        try:
            await sink.send(note(text, state=text, terminal=text == "succeeded"))
        finally:
            await sink.aclose()
            await store.close()
    [message] = slack.roots(CHANNEL)
    assert (message.text, message.edits) == ("succeeded", 1)


async def test_a_deleted_message_is_replaced_by_a_new_one(
    slack: FakeSlack, sinks: SinkFactory, store: Store
) -> None:
    sink = sinks("update")
    await sink.send(note("running"))
    [gone] = slack.roots(CHANNEL)
    slack.delete_message(CHANNEL, gone.ts)
    await sink.send(note("50%"))
    await sink.send(note("75%"))
    [message] = slack.roots(CHANNEL)
    assert (message.text, message.edits) == ("75%", 1)
    assert message.ts != gone.ts
    assert await stored_ref(store) == MessageRef(channel=CHANNEL_ID, ts=message.ts)
    assert [c.error for c in slack.calls_to("chat.update", ok_only=False)] == [
        "message_not_found", None]


async def test_a_deleted_thread_root_starts_a_new_thread(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("thread")
    await sink.send(note("started"))
    slack.delete_message(CHANNEL, slack.roots(CHANNEL)[0].ts)
    await sink.send(note("50%"))
    await sink.send(note("done"))
    [root] = slack.roots(CHANNEL)
    assert root.text == "50%"
    assert texts(slack.replies(CHANNEL, root.ts)) == ["done"]


async def test_blocks_are_sent_with_the_text_as_fallback(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*failed*"}}]
    await sinks("post").send(note("failed", blocks=blocks))
    [message] = slack.roots(CHANNEL)
    assert (message.text, message.blocks) == ("failed", blocks)


# --- pacing, rate limits, coalescing ------------------------------------------------------


async def test_messages_to_a_channel_arrive_in_order_through_the_paced_queue(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("post", min_interval="20ms")
    await asyncio.gather(*(sink.send(note(f"m{i}")) for i in range(3)))
    assert texts(slack.roots(CHANNEL)) == ["m0", "m1", "m2"]


async def test_a_429_is_waited_out_and_nothing_is_lost_or_reordered(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("post")
    slack.rate_limit(2, retry_after="0.05")
    await asyncio.gather(*(sink.send(note(f"m{i}")) for i in range(4)))
    assert texts(slack.roots(CHANNEL)) == ["m0", "m1", "m2", "m3"]
    assert [c.status for c in slack.calls] == [429, 429, 200, 200, 200, 200]
    assert sink.sender.rate_limited == 2


class VirtualTime:
    """The sender's injected clock and sleep: sleeping moves the clock, nothing waits, so
    pacing is asserted exactly instead of against the wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def paced(time: VirtualTime, *, min_interval: float = 1.0,
          max_wait: float = 30.0) -> ChannelSender:
    return ChannelSender("#ops", min_interval=min_interval, max_wait=max_wait,
                         clock=time.clock, sleep=time.sleep)


async def test_calls_to_a_channel_are_spaced_by_min_interval() -> None:
    time = VirtualTime()
    sender = paced(time, min_interval=1.0)
    called_at: list[float] = []

    async def call() -> None:
        called_at.append(time.now)

    for _ in range(3):
        await sender.call(call)
    assert called_at == [1000.0, 1001.0, 1002.0]
    await sender.aclose()


async def test_a_429_waits_its_retry_after_then_repeats_the_same_call() -> None:
    time = VirtualTime()
    sender = paced(time, min_interval=1.0)
    answers = iter([RateLimited("HTTP 429", 2.5), RateLimited("HTTP 429", 0.2), None])
    called_at: list[float] = []

    async def call() -> str:
        called_at.append(time.now)
        limited = next(answers)
        if limited is not None:
            raise limited
        return "posted"

    assert await sender.call(call) == "posted"
    # 2.5 s as asked; then 0.2 s asked, but never faster than min_interval.
    assert called_at == [1000.0, 1002.5, 1003.5]
    assert sender.rate_limited == 2
    await sender.aclose()


async def test_a_long_retry_after_hands_the_delivery_back_to_the_outbox(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("post", clock=lambda: 500.0)  # time stands still: the wait is exact
    slack.rate_limit(1, retry_after="120")
    with pytest.raises(RetryableDelivery) as caught:
        await sink.send(note("m0"))
    assert caught.value.retry_after == 120
    with pytest.raises(RetryableDelivery):  # the channel stays paused: no call is made
        await sink.send(note("m1"))
    assert len(slack.calls) == 1
    assert slack.roots(CHANNEL) == []


async def test_waiting_edits_of_one_message_coalesce_into_the_latest(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("update")
    await sink.send(note("10%"))
    slack.hold()
    in_flight = asyncio.create_task(sink.send(note("20%")))
    await slack.wait_for(lambda: slack.held == 1)
    waiting = [asyncio.create_task(sink.send(note(f"{p}%"))) for p in (30, 40, 50)]
    await until(lambda: sink.sender.pending + sink.sender.coalesced == 3, "all three queued")
    assert (sink.sender.pending, sink.sender.coalesced) == (1, 2)
    slack.release()
    await asyncio.gather(in_flight, *waiting)
    assert [c.body["text"] for c in slack.calls_to("chat.update")] == ["20%", "50%"]
    assert slack.roots(CHANNEL)[0].text == "50%"
    assert sink.sender.coalesced == 2


async def test_an_edit_with_a_terminal_state_is_never_coalesced_away(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("update")
    await sink.send(note("run 1 started"))
    slack.hold()
    in_flight = asyncio.create_task(sink.send(note("run 1 at 50%")))
    await slack.wait_for(lambda: slack.held == 1)
    queued = [
        note("run 1 at 90%"),
        note("run 1 failed", state="failed", terminal=True),
        note("run 2 started"),
        note("run 2 at 10%"),
    ]
    waiting = [asyncio.create_task(sink.send(d)) for d in queued]
    await until(lambda: sink.sender.pending + sink.sender.coalesced == 4, "all four queued")
    # 90% gave way to the failure; the failure is final, so run 2's edits queue behind it.
    assert (sink.sender.pending, sink.sender.coalesced) == (2, 2)
    slack.release()
    await asyncio.gather(in_flight, *waiting)
    updates = [c.body["text"] for c in slack.calls_to("chat.update")]
    assert updates == ["run 1 at 50%", "run 1 failed", "run 2 at 10%"]
    [root] = slack.roots(CHANNEL)
    assert texts(slack.replies(CHANNEL, root.ts)) == ["run 1 failed"]


async def test_edits_of_different_jobs_do_not_coalesce(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("update")
    await sink.send(note("a 0%", job="a"))
    await sink.send(note("b 0%", job="b"))
    slack.hold()
    in_flight = asyncio.create_task(sink.send(note("a 10%", job="a")))
    await slack.wait_for(lambda: slack.held == 1)
    waiting = [asyncio.create_task(sink.send(note(t, job=j)))
               for t, j in (("b 20%", "b"), ("a 30%", "a"))]
    await until(lambda: sink.sender.pending == 2, "both edits queued")
    slack.release()
    await asyncio.gather(in_flight, *waiting)
    assert texts(slack.roots(CHANNEL)) == ["a 30%", "b 20%"]
    assert sink.sender.coalesced == 0


# --- failures ---------------------------------------------------------------------------


async def test_a_bad_token_is_permanent_and_not_shown(
    slack: FakeSlack, sinks: SinkFactory
) -> None:
    sink = sinks("post", token="xoxb-wrong-secret-token")
    with pytest.raises(PermanentDelivery, match="invalid_auth") as caught:
        await sink.send(note("hello"))
    assert "xoxb-wrong-secret-token" not in str(caught.value)


async def test_an_unknown_channel_is_permanent(
    session: aiohttp.ClientSession, store: Store
) -> None:
    async with FakeSlack(channels={CHANNEL: CHANNEL_ID}, strict_channels=True) as fake:
        config = SlackSink.model_validate({
            "name": "ops-slack", "kind": "slack", "token": fake.token, "channel": "#nowhere",
            "base_url": fake.api_url, "min_interval": "10ms",
        })
        sink = SlackNotifier(config, session, store)
        try:
            with pytest.raises(PermanentDelivery, match="channel_not_found"):
                await sink.send(note("hello"))
        finally:
            await sink.aclose()


async def test_an_unreachable_slack_is_retryable(
    session: aiohttp.ClientSession, store: Store
) -> None:
    async with FakeSlack() as fake:
        url = fake.api_url
    config = SlackSink.model_validate({
        "name": "ops-slack", "kind": "slack", "token": "xoxb-secret", "channel": CHANNEL,
        "base_url": url, "min_interval": "10ms",
    })
    sink = SlackNotifier(config, session, store)
    try:
        with pytest.raises(RetryableDelivery) as caught:
            await sink.send(note("hello"))
        assert "xoxb-secret" not in str(caught.value)
    finally:
        await sink.aclose()


class LockedRefs:
    """A store whose database stays locked."""

    async def get_message_ref(self, sink: str, source: str, job_id: str) -> MessageRef | None:
        raise StoreError("database is locked")

    async def set_message_ref(self, sink: str, source: str, job_id: str, ref: MessageRef) -> None:
        raise StoreError("database is locked")


async def test_a_state_store_outage_is_retryable_and_sends_nothing(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    config = SlackSink.model_validate({
        "name": "ops-slack", "kind": "slack", "token": slack.token, "channel": CHANNEL,
        "mode": "update", "base_url": slack.api_url, "min_interval": "10ms",
    })
    sink = SlackNotifier(config, session, LockedRefs())  # type: ignore[arg-type]
    try:
        with pytest.raises(RetryableDelivery, match="database is locked"):
            await sink.send(note("running"))
    finally:
        await sink.aclose()
    assert slack.calls == []


async def test_a_payload_without_text_is_permanent(sinks: SinkFactory) -> None:
    broken = note("x")
    notification = Notification(
        event_id="evt_x", rule="jobs", sink="ops-slack", source="zendesk", job_id="1",
        payload={"blocks": "not a list"}, on=EventKind.TRANSITION)
    with pytest.raises(PermanentDelivery, match="template"):
        await sinks("post").send(Delivery(id=broken.id, notification=notification,
                                          created_at=broken.created_at))


# --- incoming webhooks --------------------------------------------------------------------


async def _webhook_sink(
    fake: FakeSlack, session: aiohttp.ClientSession, store: Store
) -> SlackNotifier:
    config = SlackSink.model_validate({"name": "ops-slack", "kind": "slack",
                                       "webhook_url": fake.webhook_url, "min_interval": "10ms"})
    return SlackNotifier(config, session, store)


async def test_an_incoming_webhook_posts_the_message(
    slack: FakeSlack, session: aiohttp.ClientSession, store: Store
) -> None:
    sink = await _webhook_sink(slack, session, store)
    try:
        slack.rate_limit(1, retry_after="0.05")
        await sink.send(note("via webhook", blocks=[{"type": "divider"}]))
    finally:
        await sink.aclose()
    [message] = slack.roots(WEBHOOK_CHANNEL)
    assert (message.text, message.blocks) == ("via webhook", [{"type": "divider"}])
    assert [c.status for c in slack.calls] == [429, 200]


async def test_an_incoming_webhook_refusal_is_permanent_and_hides_the_url(
    slack: FakeSlack, session: aiohttp.ClientSession, store: Store
) -> None:
    sink = await _webhook_sink(slack, session, store)
    try:
        with pytest.raises(PermanentDelivery, match="no_text") as caught:
            await sink.send(note(""))
    finally:
        await sink.aclose()
    assert "fakewebhooksecret" not in str(caught.value)
    assert "/services/" not in str(caught.value)


# --- the fake itself ----------------------------------------------------------------------


async def test_fake_slack_takes_form_bodies_and_requires_a_token(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    form = {"channel": CHANNEL, "text": "hi", "blocks": '[{"type": "divider"}]'}
    async with session.post(slack.api_url + "chat.postMessage", data=form) as anonymous:
        assert (await anonymous.json()) == {"ok": False, "error": "not_authed"}
    headers = {"Authorization": f"Bearer {slack.token}"}
    async with session.post(slack.api_url + "chat.postMessage", data=form,
                            headers=headers) as answer:
        data = await answer.json()
    assert data["ok"] is True
    assert (data["channel"], data["ts"]) == (CHANNEL_ID, "1700000000.000100")
    assert data["message"]["blocks"] == [{"type": "divider"}]


@pytest.mark.parametrize(
    ("body", "error"),
    [({"channel": CHANNEL}, "no_text"),
     ({"channel": CHANNEL, "text": "x", "blocks": {"type": "divider"}}, "invalid_blocks_format"),
     ({"channel": CHANNEL, "text": "x", "thread_ts": "1.2"}, "thread_not_found"),
     ({"text": "x"}, "channel_not_found")],
)
async def test_fake_slack_validates_message_shapes(
    slack: FakeSlack, session: aiohttp.ClientSession, body: dict[str, Any], error: str
) -> None:
    headers = {"Authorization": f"Bearer {slack.token}"}
    async with session.post(slack.api_url + "chat.postMessage", json=body,
                            headers=headers) as answer:
        assert (await answer.json()) == {"ok": False, "error": error}


async def test_fake_slack_answers_auth_test(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {slack.token}"}
    async with session.post(slack.api_url + "auth.test", headers=headers) as answer:
        data = await answer.json()
    assert data["ok"] is True and data["team_id"] == "T0FAKE"
