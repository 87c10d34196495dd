"""Slack buttons over real sockets: a running bridge posts job messages with Acknowledge /
Mute buttons to the fake Slack; the test presses them the way Slack does (a form-encoded
`payload`, signed with Slack's documented v0 scheme) at `POST /v1/slack/interactions`, and
checks what changed: the message, its thread, the recorded action, the silence. A bad
signature, a stale timestamp or a replay is refused with 401 and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config.loader import parse_config
from bridge.errors import ConfigErrors
from bridge.simulators.slack import FakeMessage, FakeSlack
from tests.config_support import config_text, push_source, rule, slack_sink, write_config
from tests.push_support import signed_push
from tests.server_support import served

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL, CHANNEL_ID = "#ops", "C0OPS"

# Buttons need the signing secret that verifies their presses.
BUTTONS = {"signing_secret": SIGNING_SECRET, "actions": ["ack", "mute"]}


def config_parts(slack_url: str, **sink: object) -> tuple[str, ...]:
    """The push source `hooks`; every new job and change of it posted to Slack as note.j2."""
    return (push_source(), slack_sink(slack_url, channel=CHANNEL, **sink),
            rule("new-jobs", "appeared", template="note.j2", notify=["ops-slack"]),
            rule("changes", template="note.j2", notify=["ops-slack"]))


Sent = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Running:
    url: str
    http: aiohttp.ClientSession
    slack: FakeSlack
    bridge: Bridge

    async def push(self, job_id: str, status: str) -> None:
        await signed_push(self.http, self.url, "hooks", {"id": job_id, "status": status},
                          f"msg_{job_id}_{status}")

    async def message(self, job_id: str, *, edits: int = 0) -> FakeMessage:
        def found() -> FakeMessage | None:
            return next((m for m in self.slack.roots(CHANNEL)
                         if job_id in (m.text or "") and m.edits >= edits), None)

        await self.slack.wait_for(lambda: found() is not None, within=10)
        message = found()
        assert message is not None
        return message

    async def press(self, message: FakeMessage, action: str, *, secret: str = SIGNING_SECRET,
                    age: float = 0.0, body: str | None = None,
                    signature: str | None = None) -> tuple[int, Any, Sent]:
        """Press a button as Slack would; returns status, answer and what was sent."""
        body = body if body is not None else press_body(message, action)
        stamp = str(int(time.time() - age))
        headers = {"X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": signature or slack_signature(secret, stamp, body),
                   "Content-Type": "application/x-www-form-urlencoded"}
        status, answer = await self.send((body, headers))
        return status, answer, (body, headers)

    async def send(self, sent: Sent) -> tuple[int, Any]:
        body, headers = sent
        async with self.http.post(f"{self.url}/v1/slack/interactions", data=body,
                                  headers=headers) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200
            return await response.json()


def slack_signature(secret: str, stamp: str, body: str) -> str:
    """Slack's documented scheme: v0= + hex HMAC-SHA256 of "v0:{timestamp}:{body}"."""
    base = f"v0:{stamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def buttons(message: FakeMessage) -> list[dict[str, Any]]:
    return [e for b in message.blocks or [] if b.get("type") == "actions"
            for e in b["elements"]]


def press_body(message: FakeMessage, action: str) -> str:
    [pressed] = [b for b in buttons(message) if b["action_id"] == f"bridge.{action}"]
    payload = {
        "type": "block_actions",
        "user": {"id": "U123ANA", "username": "ana", "team_id": "T0FAKE"},
        "api_app_id": "A0BRIDGE",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": CHANNEL_ID,
                      "is_ephemeral": False},
        "channel": {"id": CHANNEL_ID, "name": "ops"},
        "message": {"type": "message", "ts": message.ts, "text": message.text,
                    "blocks": message.blocks},
        "response_url": "https://hooks.slack.com/actions/T0FAKE/1/abc",
        "actions": [{"action_id": pressed["action_id"], "block_id": "bridge_actions",
                     "type": "button", "value": pressed["value"],
                     "action_ts": f"{time.time():.6f}"}],
    }
    return urlencode({"payload": json.dumps(payload)})


@asynccontextmanager
async def running(tmp_path: Path, sink: Mapping[str, object] = BUTTONS
                  ) -> AsyncIterator[Running]:
    async with FakeSlack(channels={CHANNEL: CHANNEL_ID}, limits=None) as slack:
        path = write_config(tmp_path, *config_parts(slack.api_url, **sink),
                            templates={"note.j2": "job {{ job.id }} is {{ job.state }}"})
        async with served(path, admin_token="admin-token") as (bridge, url, http):
            yield Running(url=url, http=http, slack=slack, bridge=bridge)


async def test_job_messages_carry_buttons_that_ask_for_confirmation(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        await r.push("exp-1", "run")
        message = await r.message("exp-1")
    shown = buttons(message)
    assert [b["action_id"] for b in shown] == [
        "bridge.ack", "bridge.mute_1h", "bridge.mute_until_resolved"]
    assert all(b["confirm"]["confirm"]["text"] and b["confirm"]["deny"]["text"] == "Cancel"
               for b in shown)
    assert {json.loads(b["value"])["job"] for b in shown} == {"exp-1"}
    assert message.blocks is not None
    assert message.blocks[0]["text"]["text"] == "job exp-1 is running"


async def test_a_sink_without_a_signing_secret_shows_no_buttons(tmp_path: Path) -> None:
    async with running(tmp_path, sink={}) as r:
        await r.push("exp-1", "run")
        message = await r.message("exp-1")
    assert buttons(message) == []
    assert message.blocks is None


async def test_a_signed_press_acknowledges_the_job(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        await r.push("exp-1", "run")
        message = await r.message("exp-1")
        status, answer, _ = await r.press(message, "ack")
        edited = await r.message("exp-1", edits=1)
        replies = r.slack.replies(CHANNEL, message.ts)
        actions = (await r.get("/v1/actions?source=hooks&job=exp-1"))["actions"]
        await r.push("exp-1", "boom")  # the next edit re-renders the message: the ack stays
        later = await r.message("exp-1", edits=2)
    assert status == 200, answer
    assert answer["action"] == "ack"
    notes = [e["text"] for b in edited.blocks or [] if b["type"] == "context"
             for e in b["elements"]]
    assert len(notes) == 1 and notes[0].startswith("✅ Acknowledged by <@U123ANA> at ")
    assert [b["action_id"] for b in buttons(edited)] == [
        "bridge.mute_1h", "bridge.mute_until_resolved"]  # acknowledged once: its button goes
    assert [m.text for m in replies] == [notes[0].replace("✅ Acknowledged by <@U123ANA>",
                                                          "✅ <@U123ANA> acknowledged this")
                                         + "."]
    assert [(a["action"], a["user_id"], a["user_name"]) for a in actions] == [
        ("ack", "U123ANA", "ana")]
    assert later.text == "job exp-1 is failed"
    assert [e["text"] for b in later.blocks or [] if b["type"] == "context"
            for e in b["elements"]] == notes
    assert [b["action_id"] for b in buttons(later)] == [
        "bridge.mute_1h", "bridge.mute_until_resolved"]


@pytest.mark.parametrize("case", ["wrong secret", "stale", "replay", "tampered", "unsigned"])
async def test_a_bad_signature_stale_timestamp_or_replay_is_401_and_changes_nothing(
        tmp_path: Path, case: str) -> None:
    async with running(tmp_path) as r:
        await r.push("exp-1", "run")
        message = await r.message("exp-1")
        if case == "replay":
            first, _, sent = await r.press(message, "mute_1h")
            assert first == 200
            [made] = (await r.get("/v1/silences"))["silences"]
        before = (len(r.slack.calls_to("chat.update")), len(r.slack.calls_to("chat.postMessage")),
                  len((await r.get("/v1/actions"))["actions"]))
        if case == "wrong secret":
            status, answer, _ = await r.press(message, "mute_1h", secret="not-the-secret")
        elif case == "stale":
            status, answer, _ = await r.press(message, "mute_1h", age=301)
        elif case == "replay":
            # The same signed request again: its timestamp still fresh, the signature valid.
            status, answer = await r.send(sent)
        elif case == "tampered":
            body = press_body(message, "mute_1h")
            good = slack_signature(SIGNING_SECRET, str(int(time.time())), body)
            status, answer, _ = await r.press(message, "mute_1h", signature=good,
                                              body=body.replace("ana", "eve"))
        else:
            status, answer, _ = await r.press(message, "mute_1h", signature="v0=")
        after = (len(r.slack.calls_to("chat.update")), len(r.slack.calls_to("chat.postMessage")),
                 len((await r.get("/v1/actions"))["actions"]))
        silences = (await r.get("/v1/silences"))["silences"]
    assert status == 401, answer
    assert answer["error"]
    assert after == before
    assert [s["id"] for s in silences] == ([made["id"]] if case == "replay" else [])


async def test_mute_creates_a_silence_that_mutes_the_job(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        await r.push("exp-1", "run")
        await r.push("exp-2", "run")
        message = await r.message("exp-1")
        status, answer, _ = await r.press(message, "mute_1h")
        [silence] = (await r.get("/v1/silences"))["silences"]
        await r.push("exp-1", "boom")
        await r.push("exp-2", "boom")
        await r.message("exp-2", edits=1)
        muted = (await r.get("/v1/outbox?status=silenced"))["deliveries"]
        edited = await r.message("exp-1", edits=1)
    assert status == 200, answer
    assert silence["matchers"] == {"source": "hooks", "job.id": "exp-1"}
    assert silence["author"] == "slack:ana (U123ANA)"
    assert [(d["job_id"], d["text"]) for d in muted] == [("exp-1", "job exp-1 is failed")]
    assert "is failed" not in (edited.text or "")  # the muted failure never reached Slack
    notes = [e["text"] for b in edited.blocks or [] if b["type"] == "context"
             for e in b["elements"]]
    assert notes == [f"🔕 Muted for 1 h by <@U123ANA> (`{silence['id']}`)"]


def test_check_rejects_actions_without_a_signing_secret_or_unknown_ones() -> None:
    text = config_text(*config_parts("http://127.0.0.1:9/api/", actions=["ack", "restart"]),
                       state="sqlite:///s.db")
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", env={})
    rendered = [e.render() for e in caught.value.errors]
    assert rendered[0] == (
        "rules.toml:22: sinks[0].actions: unknown action 'restart'; known: ack, mute_1h, "
        "mute_until_resolved, jtl_restart, jtl_interval, mute")
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text.replace('"restart"', '"mute"'), "rules.toml", env={})
    assert caught.value.errors[0].render().startswith(
        "rules.toml:14: sinks[0]: 'actions' need 'signing_secret'")


def test_mute_silences_match_the_job_id_literally() -> None:
    from bridge.silences import new_silence
    from bridge.sinks.slack_actions import literal

    odd = "sync[1]*?"
    silence = new_silence({"matchers": {"job.id": literal(odd)}, "duration": "1h"},
                          datetime.now(UTC))
    assert silence.matches({"job.id": odd})
    assert not silence.matches({"job.id": "sync1x"})
    assert not silence.matches({"job.id": "sync[1]*?-other"})


async def test_a_replay_to_another_instance_sharing_the_store_is_refused(
        tmp_path: Path) -> None:
    async with running(tmp_path) as first, running(tmp_path) as second:
        await first.push("exp-1", "run")
        message = await first.message("exp-1")
        status, _, sent = await first.press(message, "ack")
        again, answer = await second.send(sent)
        actions = (await second.get("/v1/actions"))["actions"]
    assert status == 200
    assert again == 401
    assert "replay" in answer["error"]
    assert len(actions) == 1
