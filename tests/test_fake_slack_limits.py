"""FakeSlack enforces Slack's documented budgets: 429 + whole-second Retry-After per method.

The fake runs on an injected clock here, so the budgets are checked without waiting: the
requests go over real sockets, only the fake's idea of "now" is scripted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.simulators.slack import FakeSlack, SlackLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(session: aiohttp.ClientSession, slack: FakeSlack, method: str,
               **body: Any) -> tuple[int, dict[str, Any], str | None]:
    headers = {"Authorization": f"Bearer {slack.token}"}
    async with session.post(slack.api_url + method, json=body, headers=headers) as answer:
        return answer.status, await answer.json(), answer.headers.get("Retry-After")


async def test_posts_beyond_a_short_burst_in_one_channel_are_refused_with_429(
    session: aiohttp.ClientSession,
) -> None:
    clock = Clock()
    async with FakeSlack(channels={"#ops": "C0OPS"}, clock=clock) as slack:
        answers = [await call(session, slack, "chat.postMessage", channel="#ops", text=f"{i}")
                   for i in range(SlackLimits().post_burst + 1)]
        # The burst goes through, the next call is refused with Slack's own answer.
        assert [status for status, _, _ in answers[:-1]] == [200] * SlackLimits().post_burst
        status, data, retry_after = answers[-1]
        assert (status, data) == (429, {"ok": False, "error": "ratelimited"})
        assert retry_after == "1"  # a whole number of seconds, as Slack sends
        # Another channel has a budget of its own.
        assert (await call(session, slack, "chat.postMessage", channel="#dev", text="x"))[0] == 200
        # After a second, one more post fits: about one per second per channel.
        clock.now += 1.0
        assert (await call(session, slack, "chat.postMessage", channel="C0OPS", text="x"))[0] == 200
        assert (await call(session, slack, "chat.postMessage", channel="#ops", text="y"))[0] == 429
        assert len(slack.roots("#ops")) == SlackLimits().post_burst + 1


async def test_updates_spend_a_workspace_budget_separate_from_posts(
    session: aiohttp.ClientSession,
) -> None:
    clock = Clock()
    limits = SlackLimits(update_per_minute=50, update_burst=3)
    async with FakeSlack(channels={"#a": "C0A", "#b": "C0B"}, clock=clock,
                         limits=limits) as slack:
        _, first, _ = await call(session, slack, "chat.postMessage", channel="#a", text="a")
        _, second, _ = await call(session, slack, "chat.postMessage", channel="#b", text="b")
        edits = [await call(session, slack, "chat.update", channel=m["channel"], ts=m["ts"],
                            text=f"edit {i}")
                 for i, m in enumerate([first, second, first, second])]
        # Three edits across two channels fit the one Tier 3 budget; the fourth does not.
        assert [status for status, _, _ in edits] == [200, 200, 200, 429]
        assert edits[-1][2] == "2"  # 50/min: 1.2 s to the next edit, rounded up
        # Posts were not spent by the edits.
        assert (await call(session, slack, "chat.postMessage", channel="#a", text="c"))[0] == 200
        clock.now += 1.2
        assert (await call(session, slack, "chat.update", channel=first["channel"],
                           ts=first["ts"], text="later"))[0] == 200


async def test_a_bridge_that_ignored_the_limits_would_be_refused(
    session: aiohttp.ClientSession,
) -> None:
    """What a sender without pacing gets: 30 posts at once, most of them refused."""
    async with FakeSlack(channels={"#ops": "C0OPS"}) as slack:
        answers = await asyncio.gather(*(
            call(session, slack, "chat.postMessage", channel="#ops", text=f"job {i} started")
            for i in range(30)))
        refused = [a for a in answers if a[0] == 429]
        assert len(refused) >= 30 - SlackLimits().post_burst - 1
        assert all(retry_after is not None and retry_after.isdigit()
                   for _, _, retry_after in refused)
        assert len(slack.calls_to("chat.postMessage", ok_only=False)) == 30


async def test_limits_can_be_turned_off(session: aiohttp.ClientSession) -> None:
    async with FakeSlack(channels={"#ops": "C0OPS"}, limits=None) as slack:
        answers = [await call(session, slack, "chat.postMessage", channel="#ops", text="x")
                   for _ in range(20)]
        assert {status for status, _, _ in answers} == {200}


async def test_incoming_webhooks_are_limited_too(session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with FakeSlack(clock=clock, limits=SlackLimits(webhook_burst=2)) as slack:
        statuses = []
        for _ in range(3):
            async with session.post(slack.webhook_url, json={"text": "x"}) as answer:
                statuses.append((answer.status, answer.headers.get("Retry-After")))
        assert statuses == [(200, None), (200, None), (429, "1")]
