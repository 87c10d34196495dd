"""Slack error codes reach people with the next step: in a dead letter `bridge outbox`
shows whole, and in what `bridge notify-test` prints (fake Slack over real sockets)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.cli import main as cli_main
from bridge.config import load_config
from bridge.model import DeliveryStatus
from bridge.notify_test import notify_test
from bridge.simulators.slack import FakeSlack
from bridge.simulators.zendesk import ZendeskSimulator
from tests.config_support import rule, slack_sink
from tests.crash_support import (
    EMAIL,
    TOKEN,
    all_deliveries,
    eventually,
    opened,
    state_url,
    transition_rule,
    write_config,
    zendesk_source,
)
from tests.test_delivery_e2e import running, transition

SLACK_TOKEN = "xoxb-teach-0123456789"
INVITE = ("Slack error not_in_channel (HTTP 200): invite the bot: /invite @your-bot in the "
          "channel (or add the chat:write.public scope under OAuth & Permissions > Bot Token "
          "Scopes, then reinstall the app)")


def ops_slack(api_url: str) -> str:
    return slack_sink(api_url, token=SLACK_TOKEN, mode="post", min_interval="10ms")


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as sim:
        yield sim


async def test_a_not_in_channel_dead_letter_says_invite_the_bot_and_outbox_shows_it_whole(
        tmp_path: Path, zendesk: ZendeskSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    zendesk.add_job("job-a", status="working")
    async with FakeSlack(token=SLACK_TOKEN, channels={"#ops": "C0OPS"}, limits=None,
                         scopes=("chat:write",), member_of=frozenset()) as slack:
        config = write_config(tmp_path, zendesk_source(zendesk, interval="1h"),
                              ops_slack(slack.api_url), transition_rule("ops-slack"))
        bridge = await running(config)
        try:
            await transition(bridge, zendesk, "job-a", "failed")

            async def dead() -> bool:
                async with opened(state_url(config)) as store:
                    rows = await all_deliveries(store)
                return bool(rows) and rows[0].status is DeliveryStatus.DEAD

            await eventually(dead, within=10, what="the dead letter")
        finally:
            await bridge.__aexit__(None, None, None)
    async with opened(state_url(config)) as store:
        [row] = await all_deliveries(store)
    assert row.last_error is not None and INVITE in row.last_error
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main, ["outbox", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert INVITE in listed  # not cut: the code and the whole next step


async def test_notify_test_names_the_missing_scope(tmp_path: Path) -> None:
    async with FakeSlack(token=SLACK_TOKEN, channels={"#ops": "C0OPS"},
                         scopes=("channels:read",)) as slack:
        config = load_config(write_config(tmp_path, ops_slack(slack.api_url)))
        out = io.StringIO()
        code = await notify_test(config, "ops-slack", all_types=False, out=out)
    assert code == 1
    [line] = out.getvalue().splitlines()[1:-1]
    assert line.split()[:3] == ["job.transition", "200", "FAILED"]
    assert ("Slack error missing_scope (HTTP 200): add the scope chat:write under OAuth & "
            "Permissions > Bot Token Scopes, then reinstall the app") in line


async def test_notify_test_rule_sends_the_rules_own_template_with_a_sample_of_its_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeSlack(token=SLACK_TOKEN, channels={"#ops": "C0OPS"}) as slack:
        path = write_config(
            tmp_path, ops_slack(slack.api_url),
            rule("job-stalled", "stalled", template="stuck.slack.j2", notify=["ops-slack"]),
            templates={"stuck.slack.j2": "STUCK {{ source }} {{ job.id }} ({{ on }})"})
        capsys.readouterr()
        code = await asyncio.to_thread(cli_main, ["notify-test", "--config", str(path),
                                                  "ops-slack", "--rule", "job-stalled"])
        out = capsys.readouterr().out
        [posted] = slack.roots("#ops")
    assert code == 0, out
    assert posted.text == "STUCK example 8b72 (stalled)"
    assert out.splitlines()[:2] == [
        "rule job-stalled: its template with a sample stalled event",
        "notify-test: 1 sample(s) to sink ops-slack (slack)"]
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main, ["notify-test", "--config", str(path),
                                              "ops-slack", "--rule", "nope"]) == 1
    assert "no rule 'nope' in" in capsys.readouterr().err
