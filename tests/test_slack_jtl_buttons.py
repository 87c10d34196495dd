"""JTL buttons over real sockets: a running bridge polls the JTL simulator and posts a
failed sync's message to the fake Slack with Restart and Set interval (each with a
confirm); the test presses them as Slack would (signed, v0 scheme), and the simulator gets
seed 001's request / the run-control request, and the message shows JTL's answer."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.slack import FakeMessage, FakeSlack
from tests.config_support import (
    config_text,
    jtl_source,
    push_source,
    rule,
    slack_sink,
    write_config,
)
from tests.push_support import signed_push
from tests.server_support import served
from tests.test_slack_interactions import (
    CHANNEL,
    CHANNEL_ID,
    SIGNING_SECRET,
    buttons,
    slack_signature,
)
from tests.test_sources_jtl import TENANT, TOKEN

SYNC = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


def config_parts(jtl_url: str, slack_url: str, *, jtl: bool = True) -> tuple[str, ...]:
    """The JTL source `erp` (unless `jtl` is false) and the push source `hooks`; their
    changes posted to Slack with the Acknowledge and JTL buttons."""
    return (*([jtl_source(jtl_url)] if jtl else []), push_source(),
            slack_sink(slack_url, channel=CHANNEL, signing_secret=SIGNING_SECRET,
                       actions=["ack", "jtl_restart", "jtl_interval"]),
            rule("changes", notify=["ops-slack"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Running:
    url: str
    http: aiohttp.ClientSession
    slack: FakeSlack
    jtl: JtlSimulator
    bridge: Bridge

    async def message(self, needle: str, *, edits: int = 0) -> FakeMessage:
        def found() -> FakeMessage | None:
            return next((m for m in self.slack.roots(CHANNEL)
                         if needle in (m.text or "") and m.edits >= edits), None)

        await self.slack.wait_for(lambda: found() is not None, within=10)
        message = found()
        assert message is not None
        return message

    async def press(self, message: FakeMessage, action: dict[str, Any],
                    secret: str = SIGNING_SECRET) -> tuple[int, Any]:
        payload = {
            "type": "block_actions",
            "user": {"id": "U123ANA", "username": "ana", "team_id": "T0FAKE"},
            "container": {"type": "message", "message_ts": message.ts,
                          "channel_id": CHANNEL_ID},
            "channel": {"id": CHANNEL_ID, "name": "ops"},
            "message": {"type": "message", "ts": message.ts, "text": message.text,
                        "blocks": message.blocks},
            "actions": [{**action, "block_id": "bridge_actions",
                         "action_ts": f"{time.time():.6f}"}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        stamp = str(int(time.time()))
        headers = {"X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": slack_signature(secret, stamp, body),
                   "Content-Type": "application/x-www-form-urlencoded"}
        async with self.http.post(f"{self.url}/v1/slack/interactions", data=body,
                                  headers=headers) as response:
            return response.status, await response.json()


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with (FakeSlack(channels={CHANNEL: CHANNEL_ID}, limits=None) as slack,
                JtlSimulator(tenant_id=TENANT, token=TOKEN) as jtl):
        jtl.add_sync(SYNC, state=2, sync_name="orders", sales_channel="Amazon DE")
        path = write_config(tmp_path, *config_parts(jtl.base_url, slack.api_url))
        async with served(path, admin_token="admin-token") as (bridge, url, http):
            yield Running(url=url, http=http, slack=slack, jtl=jtl, bridge=bridge)


async def failed_sync_message(r: Running) -> FakeMessage:
    await r.bridge.pipeline.poll("erp")
    r.jtl.set_sync(SYNC, State=4, ProgressText="QuotaExceeded")
    await r.bridge.pipeline.poll("erp")
    return await r.message("failed")


def notes(message: FakeMessage) -> list[str]:
    return [e["text"] for b in message.blocks or [] if b.get("type") == "context"
            for e in b["elements"]]


async def test_jtl_jobs_get_restart_and_set_interval_with_confirms(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        message = await failed_sync_message(r)
        await signed_push(r.http, r.url, "hooks", {"id": "exp-1", "status": "run"}, "msg_1")
        await signed_push(r.http, r.url, "hooks", {"id": "exp-1", "status": "boom"}, "msg_2")
        other = await r.message("exp-1")
    assert "Amazon DE: orders" in (message.text or "")
    shown = {b["action_id"]: b for b in buttons(message)}
    assert list(shown) == ["bridge.ack", "bridge.jtl_restart", "bridge.jtl_interval"]
    assert shown["bridge.jtl_restart"]["type"] == "button"
    menu = shown["bridge.jtl_interval"]
    assert menu["type"] == "static_select"
    assert [json.loads(o["value"]) for o in menu["options"]][1] == {
        "source": "erp", "job": SYNC, "choice": "PT15M"}
    assert all(b["confirm"]["deny"]["text"] == "Cancel" for b in shown.values())
    # A job of another kind of source gets no JTL buttons.
    assert [b["action_id"] for b in buttons(other)] == ["bridge.ack"]


async def test_restart_reaches_jtl_and_the_message_shows_the_result(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        message = await failed_sync_message(r)
        [restart] = [b for b in buttons(message) if b["action_id"] == "bridge.jtl_restart"]
        status, answer = await r.press(message, {"action_id": restart["action_id"],
                                                 "type": "button", "value": restart["value"]})
        edited = await r.message("failed", edits=1)
        replies = r.slack.replies(CHANNEL, message.ts)
    assert status == 200, answer
    assert r.jtl.control_log == [("POST", f"/erp/v2/worker/syncs/{SYNC}/restart", None)]
    [note] = notes(edited)
    assert note.startswith("🔄 Restart of Amazon DE: orders requested by <@U123ANA>; "
                           "JTL accepted it at ")
    assert "restarted this sync" in replies[0].text
    # Not a once-only action: the button stays for the next restart.
    assert "bridge.jtl_restart" in [b["action_id"] for b in buttons(edited)]


async def test_set_interval_sends_seed_001s_request_and_shows_the_new_interval(
        tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        message = await failed_sync_message(r)
        [menu] = [b for b in buttons(message) if b["action_id"] == "bridge.jtl_interval"]
        hourly = next(o for o in menu["options"] if json.loads(o["value"])["choice"] == "PT1H")
        status, answer = await r.press(message, {"action_id": menu["action_id"],
                                                 "type": "static_select",
                                                 "selected_option": hourly})
        edited = await r.message("failed", edits=1)
    assert status == 200, answer
    assert r.jtl.control_log == [("POST", f"/erp/v2/workers/{SYNC}", {"interval": "PT1H"})]
    assert r.jtl.items[SYNC]["interval"] == "PT1H"
    assert notes(edited) == ["⏱️ Interval of Amazon DE: orders set to PT1H by <@U123ANA>"]


async def test_a_refused_restart_is_shown_not_hidden(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        message = await failed_sync_message(r)
        [restart] = [b for b in buttons(message) if b["action_id"] == "bridge.jtl_restart"]
        r.jtl.remove_sync(SYNC)
        status, _ = await r.press(message, {"action_id": restart["action_id"],
                                            "type": "button", "value": restart["value"]})
        edited = await r.message("failed", edits=1)
    assert status == 200
    [note] = notes(edited)
    assert note.startswith(f"⚠️ Restart of `{SYNC}` failed (<@U123ANA>): JTL refused "
                           "(HTTP 404)")


async def test_a_badly_signed_jtl_press_reaches_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        message = await failed_sync_message(r)
        [restart] = [b for b in buttons(message) if b["action_id"] == "bridge.jtl_restart"]
        status, _ = await r.press(message, {"action_id": restart["action_id"], "type": "button",
                                            "value": restart["value"]}, secret="wrong")
    assert status == 401
    assert r.jtl.control_log == []


def test_check_refuses_jtl_actions_without_a_jtl_source(tmp_path: Path) -> None:
    from bridge.config.loader import parse_config
    from bridge.errors import ConfigErrors

    def text(*, jtl: bool) -> str:
        return config_text(*config_parts("http://127.0.0.1:9/erp", "http://127.0.0.1:9/api/",
                                         jtl=jtl), state="sqlite:///s.db")

    parse_config(text(jtl=True), "rules.toml", env={})  # with the jtl source: fine
    without = text(jtl=False)
    with pytest.raises(ConfigErrors) as caught:
        parse_config(without, "rules.toml", env={})
    [error] = caught.value.errors
    line = without[:without.index("actions =")].count("\n") + 1
    assert error.render() == (
        f"rules.toml:{line}: sinks[0].actions: jtl_restart, jtl_interval act on JTL syncs, "
        'but no source has kind = "jtl": the buttons would never show')
