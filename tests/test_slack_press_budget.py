"""A Slack button press is shown within the sink's budgets: its message edit and thread reply
go through the sink's own sender (bridge.sinks.slack.SlackNotifier.call_api), so they wait
at the same `chat.update` gate as the sink's notifications and sit out a 429 like them.

Over real sockets: a running bridge, the fake Slack enforcing a Tier 3 budget, presses
signed with Slack's v0 scheme."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bridge.simulators.slack import FakeSlack
from bridge.simulators.slack_limits import SlackLimits
from bridge.sinks.slack import SlackNotifier
from tests.config_support import write_config
from tests.server_support import served
from tests.test_slack_interactions import (
    CHANNEL,
    CHANNEL_ID,
    SIGNING_SECRET,
    Running,
    config_parts,
)

# Slack allows one edit a second here (the fake's Tier 3 budget, one call at a time); the
# sink spends a little less (one each 1.2 s), so network jitter never makes it too early.
FAKE_LIMITS = SlackLimits(post_per_second=50, post_burst=50, update_per_minute=60,
                          update_burst=1)
SINK_LIMITS = {"post_per_second": 50.0, "post_burst": 50, "update_per_minute": 50,
               "update_burst": 1}


@asynccontextmanager
async def running(tmp_path: Path, limits: SlackLimits | None) -> AsyncIterator[Running]:
    async with FakeSlack(channels={CHANNEL: CHANNEL_ID}, limits=limits) as slack:
        path = write_config(tmp_path, *config_parts(
            slack.api_url, signing_secret=SIGNING_SECRET, actions=["ack"], min_interval=None,
            rate_limits=SINK_LIMITS), templates={"note.j2": "job {{ job.id }} is {{ job.state }}"})
        async with served(path, admin_token="admin-token") as (bridge, url, http):
            yield Running(url=url, http=http, slack=slack, bridge=bridge)


def notifier(r: Running) -> SlackNotifier:
    sink = r.bridge.sinks["ops-slack"]
    assert isinstance(sink, SlackNotifier)
    return sink


async def test_press_edits_wait_at_the_sinks_chat_update_budget_and_slack_refuses_none(
        tmp_path: Path) -> None:
    async with running(tmp_path, FAKE_LIMITS) as r:
        await r.push("exp-1", "run")
        await r.push("exp-2", "run")
        first, second = await r.message("exp-1"), await r.message("exp-2")
        # Two presses and a notification's edit at once: three chat.update calls where the
        # budget allows one a second. The sink's gate spaces them; Slack refuses none.
        one, _, _ = await r.press(first, "ack")
        two, _, _ = await r.press(second, "ack")
        await r.push("exp-1", "boom")
        await r.message("exp-1", edits=2)
        await r.message("exp-2", edits=1)
        updates = r.slack.calls_to("chat.update", ok_only=False)
        gate = notifier(r).sender.gate("chat.update")
    assert (one, two) == (200, 200)
    assert sorted((c.status, c.body["ts"]) for c in updates) == sorted(
        [(200, first.ts), (200, second.ts), (200, first.ts)])
    assert gate.rate_limited == 0 and notifier(r).sender.rate_limited == 0


async def test_a_429_on_a_press_edit_is_waited_out_after_the_press_is_answered(
        tmp_path: Path) -> None:
    async with running(tmp_path, None) as r:
        await r.push("exp-1", "run")
        message = await r.message("exp-1")
        r.slack.rate_limit(calls=1, retry_after=5)
        status, answer, _ = await r.press(message, "ack")
        # Answered while the gate still sits out Slack's Retry-After: Slack wants its answer
        # within 3 s, the edit comes when the budget allows.
        edits_when_answered = (await r.message("exp-1")).edits
        edited = await r.message("exp-1", edits=1)
        await r.slack.wait_for(lambda: bool(r.slack.replies(CHANNEL, message.ts)))
        updates = r.slack.calls_to("chat.update", ok_only=False)
        reply = r.slack.replies(CHANNEL, message.ts)
        gate = notifier(r).sender.gate("chat.update")
    assert status == 200, answer
    assert edits_when_answered == 0
    assert [c.status for c in updates] == [429, 200]
    assert updates[1].at - updates[0].at >= 5.0
    assert gate.rate_limited == 1
    assert [b["type"] for b in edited.blocks or []].count("context") == 1
    assert len(reply) == 1 and "acknowledged this" in (reply[0].text or "")
