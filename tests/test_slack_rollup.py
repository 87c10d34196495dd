"""The roll-up: when a channel's post budget cannot keep up, urgent sends are named at once.

The real SlackNotifier talks over real sockets to FakeSlack with Slack's limits on, both on
one stepped clock (`SteppedTime`, as in test_slack_urgency): budgets and waits move only
when the test moves time, so what is sent when is decided by the budgets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.config.loader import parse_config
from bridge.config.schema import SlackSink
from bridge.errors import ConfigErrors
from bridge.model import Delivery, EventKind, Notification, Priority
from bridge.simulators.slack import FakeSlack
from bridge.simulators.slack_limits import SLACK_LIMITS
from bridge.sinks.slack import SlackNotifier
from bridge.sinks.slack_rollup import HEADER
from bridge.store import open_store
from bridge.store.base import PollCommit, Store
from tests.slack_delivery_support import delivering_to_fake_slack
from tests.test_slack_urgency import SteppedTime, failed, note, run_out, send, until

CHANNEL = "#ops"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    real = open_store(f"sqlite:///{tmp_path}/state.db")
    await real.open()
    try:
        yield real
    finally:
        await real.close()


@pytest.fixture
def time() -> SteppedTime:
    return SteppedTime()


@pytest.fixture
async def slack(time: SteppedTime) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels={CHANNEL: "C0OPS"}, clock=time.clock) as fake:
        yield fake


SinkFactory = Callable[..., SlackNotifier]


@pytest.fixture
async def sinks(slack: FakeSlack, store: Store, time: SteppedTime
                ) -> AsyncIterator[SinkFactory]:
    made: list[SlackNotifier] = []
    async with aiohttp.ClientSession() as session:
        # 3.5 s: job1..job3 of a burst get their tokens within it, job4 on would not.
        def make(mode: str = "update", overflow_after: str = "3.5s", **limits: Any
                 ) -> SlackNotifier:
            config = SlackSink.model_validate({
                "name": "ops-slack", "kind": "slack", "token": slack.token,
                "channel": CHANNEL, "mode": mode, "base_url": slack.api_url,
                "overflow_after": overflow_after, "rate_limits": {"post_burst": 1, **limits},
            })
            sink = SlackNotifier(config, session, store, clock=time.clock, sleep=time.sleep)
            made.append(sink)
            return sink

        yield make
        for sink in made:
            await sink.aclose()


def rollups(slack: FakeSlack) -> list[str]:
    """The roll-up messages of the channel as they read now."""
    return [m.text or "" for m in slack.roots(CHANNEL) if (m.text or "").startswith(HEADER)]


def waiting(sink: SlackNotifier) -> int:
    """Calls waiting for a post slot (the roll-up's own post among them)."""
    return sink.sender.gate("chat.postMessage").waiting


def settled(slack: FakeSlack) -> bool:
    """job0 spent the one token (so the gate now waits for the next one)."""
    return own_posts(slack) == ["job0 failed"]


def own_posts(slack: FakeSlack) -> list[str]:
    return [str(c.body["text"]) for c in slack.calls_to("chat.postMessage")
            if not str(c.body["text"]).startswith(HEADER) and "thread_ts" not in c.body]


async def test_failures_that_would_wait_past_overflow_after_are_named_in_the_rollup_at_once(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    tasks = [send(sink, failed(f"job{i}")) for i in range(8)]
    # job0 had the one token; job1..job3 get theirs within 3.5 s, job4..job7 would not.
    await until(lambda: settled(slack) and sink.sender.parked == 4 and waiting(sink) == 8,
                "four failures handed to the roll-up, whose post waits too")
    time.advance(1.0)  # the next token goes to the roll-up, ahead of job1
    await until(lambda: len(rollups(slack)) == 1, "the roll-up posted")
    assert rollups(slack)[0].splitlines()[1:] == [f"job{i} failed" for i in range(4, 8)]
    assert own_posts(slack) == ["job0 failed"]
    await run_out(time, tasks, step=1.0)
    # Every failure still gets its own message, once.
    assert sorted(own_posts(slack)) == sorted(f"job{i} failed" for i in range(8))


async def test_failures_arriving_while_the_rollup_is_up_are_added_by_editing_it(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    tasks = [send(sink, failed(f"job{i}")) for i in range(6)]
    await until(lambda: settled(slack) and sink.sender.parked == 2 and waiting(sink) == 6,
                "job4 and job5 handed to the roll-up")
    time.advance(1.0)
    await until(lambda: len(rollups(slack)) == 1, "the roll-up posted")
    posts_before = len(slack.calls_to("chat.postMessage"))
    tasks += [send(sink, failed(f"late{i}")) for i in range(3)]
    # chat.update has its own budget: no time passes, no post is spent.
    await until(lambda: "late2 failed" in rollups(slack)[0], "the late failures added")
    assert len(slack.calls_to("chat.postMessage")) == posts_before
    assert len(rollups(slack)) == 1
    lines = rollups(slack)[0].splitlines()[1:]
    assert len(lines) == len(set(lines))
    await run_out(time, tasks, step=1.0)


async def test_a_failure_that_has_waited_overflow_after_is_named_though_its_wait_looked_short(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    first = send(sink, failed("job0"))
    await until(lambda: first.done(), "job0 posted")
    tasks = [send(sink, failed("job1")), send(sink, failed("job2"))]
    # job1's post is due in 1 s, job2's in 2 s: neither is rolled up.
    await until(lambda: sink.sender.gate("chat.postMessage").waiting == 2, "both waiting")
    assert sink.sender.parked == 0
    slack.rate_limit(1, retry_after=10)  # job1's post is refused: 10 s for everyone
    time.advance(1.0)
    await until(lambda: sink.sender.rate_limited == 1, "job1 refused")
    for _ in range(2):
        time.advance(1.0)
        await until(time.settled, "the calls due by now woke and went on")
    assert sink.sender.parked == 0  # job2 has waited 3 s
    time.advance(1.0)  # and now 4 s
    await until(lambda: sink.sender.parked == 1, "job2 handed to the roll-up")
    await run_out(time, tasks, step=1.0)
    [rollup] = rollups(slack)
    assert rollup.splitlines()[1:] == ["job2 failed"]
    assert own_posts(slack) == ["job0 failed", "job1 failed", "job2 failed"]


def queued_ago(delivery: Delivery, seconds: float) -> Delivery:
    return replace(delivery, created_at=datetime.now(UTC) - timedelta(seconds=seconds))


async def test_the_time_a_failure_waited_in_the_outbox_counts_toward_overflow_after(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    first = send(sink, failed("job0"))
    await until(lambda: first.done(), "job0 posted")
    # Due in 1 s, but it has waited 5 s in the outbox already.
    late = send(sink, queued_ago(failed("late"), 5))
    await until(lambda: sink.sender.parked == 1, "the late failure handed to the roll-up")
    await run_out(time, [late], step=1.0)
    [rollup] = rollups(slack)
    assert rollup.splitlines()[1:] == ["late failed"]


async def test_a_late_failure_that_can_be_posted_now_is_posted_not_rolled_up(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    await send(sink, queued_ago(failed("late"), 60))
    assert own_posts(slack) == ["late failed"]
    assert sink.sender.overflowed == 0


async def test_a_failure_shown_in_the_rollup_no_longer_goes_ahead_of_older_sends(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    tasks = [send(sink, failed("job0"))]
    await until(lambda: settled(slack), "job0 posted")
    tasks.append(send(sink, note("s", "s started")))
    tasks += [send(sink, failed(f"job{i}")) for i in range(1, 6)]
    await until(lambda: sink.sender.parked == 2, "job4 and job5 handed to the roll-up")
    await run_out(time, tasks, step=1.0)
    # Unshown failures first; then, in arrival order, the start and the shown failures.
    assert own_posts(slack) == ["job0 failed", "job1 failed", "job2 failed", "job3 failed",
                                "s started", "job4 failed", "job5 failed"]


async def test_overflow_after_0s_turns_the_rollup_off(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks(overflow_after="0s")
    tasks = [send(sink, failed(f"job{i}")) for i in range(8)]
    await run_out(time, tasks, step=1.0)
    assert rollups(slack) == []
    assert len(own_posts(slack)) == 8


async def test_only_urgent_sends_are_rolled_up(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    tasks = [send(sink, note(f"job{i}", f"job{i} started")) for i in range(8)]
    await run_out(time, tasks, step=1.0)
    assert rollups(slack) == []
    assert sink.sender.overflowed == 0


async def test_the_rollup_shows_a_jobs_newer_state_in_place_of_its_line(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    tasks = [send(sink, failed(f"job{i}")) for i in range(5)]
    tasks.append(send(sink, note("x", "x stalled", priority=Priority.HIGH)))
    await until(lambda: settled(slack) and sink.sender.parked == 2 and waiting(sink) == 6,
                "job4 and the stall handed to the roll-up")
    time.advance(1.0)
    await until(lambda: "x stalled" in "".join(rollups(slack)), "the stall named")
    tasks.append(send(sink, failed("x")))  # takes the waiting stall's place
    await until(lambda: "x failed" in "".join(rollups(slack)), "the failure shown")
    await run_out(time, tasks, step=1.0)
    [rollup] = rollups(slack)
    assert "x stalled" not in rollup
    assert rollup.count("x failed") == 1


async def test_a_new_rollup_opens_once_every_named_send_had_its_own_post(
    slack: FakeSlack, sinks: SinkFactory, time: SteppedTime
) -> None:
    sink = sinks()
    for burst in ("a", "b"):
        sends = [send(sink, failed(f"{burst}{i}")) for i in range(6)]
        # The clock moves only once the whole burst is queued: {burst}0 posted, 1-3 within
        # `overflow_after`, 4 and 5 handed to a roll-up (moving it earlier, on a slow
        # machine, let the budget refill before the burst had arrived).
        await until(lambda: sink.sender.parked == 2, f"burst {burst} queued, two parked")
        await run_out(time, sends, step=1.0)
        assert sink.sender.parked == 0
    first, second = rollups(slack)
    assert "a5 failed" in first and "b5 failed" not in first
    assert "b5 failed" in second and "a5 failed" not in second


def test_overflow_after_on_an_incoming_webhook_sink_is_an_error_at_its_line() -> None:
    text = """
[[sinks]]
name = "hooked"
kind = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/secret"
overflow_after = "3s"
"""
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", env={})
    assert caught.value.errors[0].render().startswith(
        "rules.toml:6: sinks[0].overflow_after: needs 'token'")


# A channel that falls behind at once: Slack's limits on, one post a second, no burst.
BEHIND: dict[str, Any] = {"limits": SLACK_LIMITS, "overflow_after": "500ms",
                          "rate_limits": {"post_per_second": 1, "post_burst": 1}}


def row(job: str) -> Notification:
    return Notification(event_id=f"evt_{job}", rule="jobs", sink="ops-slack", source="zendesk",
                        job_id=job, payload={"text": f"{job} failed"},
                        on=EventKind.TRANSITION, terminal=True, state="failed",
                        priority=Priority.HIGH)


async def test_while_the_channel_is_behind_the_next_failures_leave_the_outbox_at_once(
    tmp_path: Path,
) -> None:
    # Real time: 12 failures at 1 post/s. The worker hands Slack 6 rows at a time; once
    # those wait in the roll-up only for their own posts, it hands over the next 6 rather
    # than leave them in the outbox until the first 6 are posted.
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    jobs = [f"job{i:02d}" for i in range(12)]
    try:
        async with delivering_to_fake_slack(store, tmp_path, **BEHIND) as (slack, workers, _):
            await store.commit_poll(PollCommit(source="zendesk", at=datetime.now(UTC),
                                               notifications=[row(job) for job in jobs]))
            workers.start()
            await slack.wait_for(lambda: len(own_posts(slack)) == 12, within=30)
    finally:
        await store.close()
    # From the record: when every failure had been named (its own post or the roll-up),
    # most had no post of their own yet.
    named: set[str] = set()
    own = 0
    for call in slack.calls:
        text = str(call.body.get("text", ""))
        named |= {job for job in jobs if job in text}
        own += not text.startswith(HEADER) and call.method == "chat.postMessage"
        if named == set(jobs):
            break
    assert own < 6
    assert sorted(own_posts(slack)) == sorted(f"{job} failed" for job in jobs)


async def test_while_the_channel_is_behind_only_urgent_rows_leave_the_outbox_early(
    tmp_path: Path,
) -> None:
    # 30 "job started" rows and 12 failures. The rows handed over early (the sink had room)
    # are the failures only: a start handed over then would just wait in the sink.
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    jobs = [f"job{i:02d}" for i in range(12)]
    starts = [replace(row(f"new{i:02d}"), event_id=f"evt_new{i:02d}", terminal=False,
                      state="pending", priority=Priority.LOW,
                      payload={"text": f"new{i:02d} started"}) for i in range(30)]
    try:
        async with delivering_to_fake_slack(store, tmp_path, **BEHIND) as (slack, workers,
                                                                             sink):
            assert isinstance(sink, SlackNotifier)
            await store.commit_poll(PollCommit(source="zendesk", at=datetime.now(UTC),
                                               notifications=starts + [row(j) for j in jobs]))
            workers.start()
            await slack.wait_for(lambda: all(any(j in r for r in rollups(slack))
                                             or f"{j} failed" in own_posts(slack)
                                             for j in jobs), within=20)
            assert sink.sender.pending == sink.sender.parked
            assert not any("started" in text for text in own_posts(slack))
    finally:
        await store.close()
