"""A window with `summary = true`: the failures it mutes arrive as one digest per (rule, sink)
when it ends, through the outbox, across a restart; a window without it sends nothing. Real
`Bridge` (SQLite), Zendesk simulator, fake Slack and a standardwebhooks-verifying receiver;
the clock is the test's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config.loader import parse_config
from bridge.errors import ConfigErrors
from bridge.model import DeliveryStatus
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.windows import Window
from tests import test_groups_e2e as groups_e2e
from tests.config_support import pager_sink, rule, window
from tests.test_groups_e2e import CHANNEL, T0, Clock, fail, failures_config, flush, jobs, started
from tests.test_windows import utc

# The grouping tests' fake servers (Zendesk simulator, fake Slack, verifying receiver).
zendesk = groups_e2e.zendesk
slack = groups_e2e.slack
receiver = groups_e2e.receiver


def config(tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
           receiver: WebhookReceiver, *, summary: bool) -> Path:
    # T0 is Monday 10:00 UTC: the window is open for the test's first hour.
    return failures_config(tmp_path, zendesk, slack, receiver,
                           window("maint", "10:00", "11:00", summary=summary),
                           mute_during=["maint"])


async def test_failures_muted_by_a_summary_window_arrive_as_one_digest_when_it_ends(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    ids = jobs("job-", 5, zendesk)
    clock = Clock()
    path = config(tmp_path, zendesk, slack, receiver, summary=True)
    bridge = await started(path, clock)
    try:
        clock.advance(60)
        await fail(bridge, zendesk, *ids[:3])
        assert await flush(bridge) == 0
        silenced = await bridge.store.list_outbox(DeliveryStatus.SILENCED)
        assert len(silenced) == 6  # still recorded as silenced, per event and sink
    finally:
        await bridge.__aexit__(None, None, None)  # stopped inside the window
    clock.advance(600)
    bridge = await started(path, clock)
    try:
        await fail(bridge, zendesk, *ids[3:])
        clock.now = T0 + timedelta(minutes=59, seconds=59)
        assert await flush(bridge) == 0  # the window is still open
        assert slack.calls_to("chat.postMessage") == [] and receiver.requests == []
        clock.now = T0 + timedelta(hours=1)
        assert await flush(bridge) == 2  # one digest per sink
        assert await flush(bridge) == 2  # never twice
        await receiver.wait_for(lambda: len(receiver.requests) == 1, within=10)
        await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 6, within=10)
        [root] = slack.roots(CHANNEL)
        assert "5 jobs" in str(root.text) and "❌ 5 failed" in str(root.text)
        assert "maint" in str(root.text)
        assert len(slack.replies(CHANNEL, root.ts)) == 5
        [request] = receiver.requests
        body = request.json()
        assert request.verified and body["type"] == "job.group"
        assert body["data"]["group"] == {"window": "maint", "ends": "2026-11-23T11:00:00Z"}
        assert body["data"]["counts"] == {"failed": 5} and len(body["data"]["events"]) == 5
        # After the window, failures are sent one by one again.
        zendesk.add_job("after", status="working")
        await bridge.pipeline.poll("zendesk")
        zendesk.set_job("after", status="failed", message="after ran out of paper")
        outcome = await bridge.pipeline.poll("zendesk")
        assert len(outcome.notifications) == 2
    finally:
        await bridge.__aexit__(None, None, None)


async def test_a_window_without_summary_sends_nothing_when_it_ends(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    ids = jobs("job-", 3, zendesk)
    clock = Clock()
    bridge = await started(config(tmp_path, zendesk, slack, receiver, summary=False), clock)
    try:
        await fail(bridge, zendesk, *ids)
        clock.now = T0 + timedelta(hours=2)
        assert await flush(bridge) == 0
        assert await bridge.store.open_groups() == []
        assert len(await bridge.store.list_outbox(DeliveryStatus.SILENCED)) == 6
    finally:
        await bridge.__aexit__(None, None, None)
    assert slack.calls_to("chat.postMessage") == [] and receiver.requests == []


def test_check_reports_a_bad_summary_with_file_and_line() -> None:
    text = pager_sink() + window("maint", "10:00", "11:00", summary="yes please")
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", env={})
    [line] = [e.render() for e in caught.value.errors]
    assert line.startswith("rules.toml:11: windows[0].summary: ")


@pytest.mark.parametrize(("start", "end", "moment", "ends"), [
    ("10:00", "11:00", "2026-11-23T10:30:00", "2026-11-23T11:00:00"),
    # Across midnight: from the evening part, and from the morning part.
    ("22:00", "06:00", "2026-11-23T23:00:00", "2026-11-24T06:00:00"),
    ("22:00", "06:00", "2026-11-24T05:00:00", "2026-11-24T06:00:00"),
    ("22:00", "24:00", "2026-11-23T23:00:00", "2026-11-24T00:00:00"),
])
def test_when_an_open_window_ends(start: str, end: str, moment: str, ends: str) -> None:
    window = Window(name="w", start=start, end=end)  # type: ignore[arg-type]
    now = utc(moment)
    assert window.is_open(now)
    assert window.ends_after(now) == utc(ends)


def test_a_berlin_night_window_ends_at_its_wall_clock_time_after_spring_forward() -> None:
    # 01:00-04:00 Europe/Berlin on 29 March 2026: 04:00 CEST is 02:00 UTC, not 03:00.
    window = Window(name="w", start="01:00", end="04:00",  # type: ignore[arg-type]
                    timezone="Europe/Berlin")
    assert window.ends_after(utc("2026-03-29T00:30:00")) == utc("2026-03-29T02:00:00")


def test_a_summary_no_rule_mutes_with_is_an_error_not_ignored() -> None:
    text = (pager_sink() + rule("failures", to=["failed"], active_during=["maint"])
            + window("maint", "10:00", "11:00", summary=True))
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", env={})
    assert [e.render() for e in caught.value.errors] == [
        "rules.toml:19: windows[0].summary: has no effect: no rule names this window in "
        "mute_during (the summary collects the failures mute_during mutes)"]
