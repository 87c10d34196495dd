"""Slack delivery under Slack's limits: urgent first, coalesced, separate budgets per method.

The real SlackNotifier talks over real sockets to FakeSlack with its limits on. Both run on
one stepped clock (`SteppedTime`): the sender's waits for its budgets block until the test
moves time on, and the fake judges its own budgets by the same clock, so what the fake
accepts or refuses is decided by the budgets, not by how fast this machine is.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import SlackSink
from bridge.model import Delivery, EventKind, Notification, Priority
from bridge.simulators.slack import FakeSlack, SlackLimits
from bridge.sinks.slack import SlackNotifier
from bridge.store.base import Store
from tests import store_fixtures

CHANNEL = "#ops"
_events = itertools.count(1)


class SteppedTime:
    """A clock that moves only when the test says; `sleep` waits until it has."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        # Woken by `advance`, not yet run on: see `settled`.
        self._woken: set[asyncio.Future[None]] = set()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        try:
            await wake
        finally:
            self._woken.discard(wake)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [(at, f) for at, f in self._sleepers if at <= self.now + 1e-9]
        self._sleepers = [(at, f) for at, f in self._sleepers if at > self.now + 1e-9]
        for _, wake in due:
            if not wake.done():
                wake.set_result(None)
                self._woken.add(wake)

    def settled(self) -> bool:
        """Every sleeper the last `advance` woke has run on, to its next wait: what a new
        time makes happen has happened (to wait on before asserting that nothing did)."""
        return not self._woken


async def until(predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
    for _ in range(int(within / 0.002)):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


async def run_out(time: SteppedTime, tasks: list[asyncio.Task[None]], *,
                  step: float = 0.25, limit: int = 2000) -> None:
    """Move time on in steps until every send is done."""
    for _ in range(limit):
        if all(t.done() for t in tasks):
            for t in tasks:
                t.result()
            return
        await asyncio.sleep(0.002)
        time.advance(step)
    raise AssertionError("sends did not finish")


store = store_fixtures.sqlite_store


@pytest.fixture
def time() -> SteppedTime:
    return SteppedTime()


@pytest.fixture
async def slack(time: SteppedTime) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels={CHANNEL: "C0OPS"}, clock=time.clock) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


SinkFactory = Callable[..., SlackNotifier]


@pytest.fixture
async def sinks(slack: FakeSlack, session: aiohttp.ClientSession, store: Store,
                time: SteppedTime) -> AsyncIterator[SinkFactory]:
    made: list[SlackNotifier] = []

    def make(mode: str, channel: str = CHANNEL, **limits: Any) -> SlackNotifier:
        config = SlackSink.model_validate({
            "name": "ops-slack", "kind": "slack", "token": slack.token, "channel": channel,
            "mode": mode, "base_url": slack.api_url, "rate_limits": limits,
        })
        sink = SlackNotifier(config, session, store, clock=time.clock, sleep=time.sleep)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def note(job: str, text: str, *, state: str = "running",
         priority: Priority = Priority.LOW) -> Delivery:
    terminal = state in ("failed", "cancelled", "succeeded")
    notification = Notification(
        event_id=f"evt_{next(_events)}", rule="jobs", sink="ops-slack", source="zendesk",
        job_id=job, payload={"text": text}, on=EventKind.TRANSITION, terminal=terminal,
        state=state, priority=priority)
    return Delivery(id=notification.delivery_id, notification=notification,
                    created_at=datetime.now(UTC))


def failed(job: str) -> Delivery:
    return note(job, f"{job} failed", state="failed", priority=Priority.HIGH)


def posted(slack: FakeSlack) -> list[str]:
    return [str(c.body.get("text")) for c in slack.calls_to("chat.postMessage")]


def send(sink: SlackNotifier, delivery: Delivery) -> asyncio.Task[None]:
    return asyncio.create_task(sink.send(delivery))


async def test_a_failure_queued_behind_50_waiting_start_posts_is_sent_first(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks("post", post_burst=1)
    starts = [send(sink, note(f"job{i}", f"job{i} started")) for i in range(50)]
    post_gate = sink.sender.gate("chat.postMessage")
    # One start had the one token; the other 49 wait for the next.
    await until(lambda: len(posted(slack)) == 1 and post_gate.waiting == 49, "49 waiting")
    failure = send(sink, failed("job99"))
    await until(lambda: post_gate.waiting == 50, "the failure waiting too")
    time.advance(1.0)
    await until(lambda: len(posted(slack)) == 2, "the next post")
    assert posted(slack)[1] == "job99 failed"
    await run_out(time, [*starts, failure], step=1.0)
    assert len(posted(slack)) == 51
    assert slack.calls_to("chat.postMessage", ok_only=False) == slack.calls_to("chat.postMessage")


async def test_a_job_keeps_its_order_while_urgent_jobs_go_first(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks("post", post_burst=1)
    post_gate = sink.sender.gate("chat.postMessage")
    tasks = [send(sink, note("x", "x started"))]
    await until(lambda: len(posted(slack)) == 1, "x's post spends the token")
    tasks += [send(sink, note("a", "a started")), send(sink, note("b", "b started"))]
    await until(lambda: post_gate.waiting == 2, "a and b waiting")
    # a's failure is the most urgent, but it may not overtake a's own start.
    tasks.append(send(sink, failed("a")))
    await until(lambda: sink.sender.pending == 3, "a's failure queued behind a's start")
    assert post_gate.waiting == 2
    time.advance(1.0)
    await until(lambda: len(posted(slack)) == 2 and post_gate.waiting == 2,
                "a's start sent, its failure waiting with b")
    time.advance(1.0)
    await run_out(time, tasks, step=1.0)
    assert posted(slack) == ["x started", "a started", "a failed", "b started"]


async def test_a_post_waiting_for_its_slot_is_replaced_by_the_jobs_later_state(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks("update", post_burst=1)
    other = send(sink, note("b", "b started"))
    await until(lambda: len(posted(slack)) == 1, "b's post spends the token")
    waiting = send(sink, note("a", "a started"))
    await until(lambda: sink.sender.gate("chat.postMessage").waiting == 1, "a's post waiting")
    later = [send(sink, note("a", "a at 50%")), send(sink, note("a", "a at 80%"))]
    await run_out(time, [other, waiting, *later])
    # One chat.postMessage with the latest state; never a post followed by an edit.
    assert posted(slack) == ["b started", "a at 80%"]
    assert slack.calls_to("chat.update") == []
    assert sink.sender.coalesced == 2
    assert [m.text for m in slack.roots(CHANNEL)] == ["b started", "a at 80%"]


async def test_a_terminal_failure_is_never_coalesced_away_and_still_gets_its_reply(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks("update", post_burst=1)
    other = send(sink, note("b", "b started"))
    await until(lambda: len(posted(slack)) == 1, "b's post spends the token")
    waiting = send(sink, note("a", "a started"))
    await until(lambda: sink.sender.gate("chat.postMessage").waiting == 1, "a's post waiting")
    # The failure takes the waiting post's place; the reminder after it may not replace it.
    rest = [send(sink, failed("a")), send(sink, note("a", "a still failed", state="failed"))]
    await run_out(time, [other, waiting, *rest])
    root = next(m for m in slack.roots(CHANNEL) if m.text != "b started")
    assert root.text == "a still failed"  # the reminder edited the failure's message
    assert [r.text for r in slack.replies(CHANNEL, root.ts)] == ["a failed", "a still failed"]
    assert "a started" not in posted(slack)
    assert [c.body["text"] for c in slack.calls_to("chat.update")] == ["a still failed"]


async def test_edits_and_posts_spend_separate_budgets(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime, store: Store
) -> None:
    sink = sinks("update", post_burst=1)
    first = send(sink, note("x", "x started"))
    await until(lambda: first.done(), "x's root")
    starts = [send(sink, note(f"job{i}", f"job{i} started")) for i in range(50)]
    post_gate = sink.sender.gate("chat.postMessage")
    await until(lambda: post_gate.waiting == 50, "50 posts waiting for the post budget")
    at = time.now
    await send(sink, note("x", "x at 50%"))  # time does not move: the edit has its budget
    [edit] = slack.calls_to("chat.update")
    assert (edit.body["text"], edit.at) == ("x at 50%", at)
    assert post_gate.waiting == 50
    await run_out(time, starts, step=1.0)
    assert len(posted(slack)) == 51


async def test_a_429_on_one_method_does_not_stall_the_other(
    session: aiohttp.ClientSession, store: Store, time: SteppedTime
) -> None:
    # The fake allows one edit at a time, the sink thinks five: the second edit gets a 429.
    limits = SlackLimits(update_per_minute=30, update_burst=1)
    async with FakeSlack(channels={CHANNEL: "C0OPS"}, clock=time.clock,
                         limits=limits) as slack:
        config = SlackSink.model_validate({
            "name": "ops-slack", "kind": "slack", "token": slack.token, "channel": CHANNEL,
            "mode": "update", "base_url": slack.api_url,
            "rate_limits": {"update_burst": 5, "post_burst": 5},
        })
        sink = SlackNotifier(config, session, store, clock=time.clock, sleep=time.sleep)
        try:
            for job in ("a", "b"):
                await send(sink, note(job, f"{job} started"))
            await send(sink, note("a", "a at 50%"))
            edit = send(sink, note("b", "b at 50%"))
            update_gate = sink.sender.gate("chat.update")
            await until(lambda: update_gate.rate_limited == 1, "the edit refused")
            assert update_gate.paused_until == time.now + 2  # Retry-After: 2 (30/min)
            # Posts go on at the same instant while edits sit out their Retry-After.
            await send(sink, note("c", "c started"))
            assert slack.calls_to("chat.postMessage")[-1].at == time.now
            assert not edit.done()
            await run_out(time, [edit], step=0.5)
            assert [m.text for m in slack.roots(CHANNEL)] == ["a at 50%", "b at 50%",
                                                              "c started"]
            assert sink.sender.rate_limited == 1
        finally:
            await sink.aclose()


async def test_a_bridge_that_ignored_the_limits_would_be_refused_and_this_one_is_not(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    def refused() -> int:
        return len([c for c in slack.calls if c.status == 429])

    # Budgets far above Slack's: the fake refuses most of a burst of 20 posts.
    careless = sinks("post", post_per_second=1000, post_burst=100)
    await run_out(time, [send(careless, note(f"j{i}", f"j{i}")) for i in range(20)])
    assert refused() >= 10
    assert careless.sender.rate_limited == refused()
    # The default budgets (Slack's), in another channel: the same burst, not one refusal.
    before = refused()
    careful = sinks("post", channel="#dev")
    await run_out(time, [send(careful, note(f"k{i}", f"k{i}")) for i in range(20)])
    assert refused() == before
    assert careful.sender.rate_limited == 0
    assert len(slack.roots(CHANNEL)) == len(slack.roots("#dev")) == 20
