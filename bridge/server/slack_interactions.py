"""`POST /v1/slack/interactions`: Slack button presses, verified, then acted on.

Slack signs each request with the app's signing secret: `X-Slack-Signature` is `v0=` and
the hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}`. The signature is checked
with slack_sdk's `SignatureVerifier` against every Slack sink that has a `signing_secret`
(the one that verifies is the sink pressed); a timestamp more than 5 minutes from our clock,
or a signature already accepted (a replay, remembered in the store's replay guard, so any
instance sharing it refuses it), is refused with 401 before anything is read.

The body is form-encoded `payload=<json>` of type `block_actions`. The pressed button's
`action_id` (`bridge.<name>`) picks the handler from the registry in
bridge.sinks.slack_actions, its `value` names the job. The handler's outcome is shown where
the press happened: the message is edited (`chat.update`, a note above the buttons) and a
reply goes to its thread. Who pressed, and what it did, is logged and kept in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from slack_sdk.signature import Clock, SignatureVerifier

from bridge.config.schema import Config, SlackSink
from bridge.errors import DeliveryError
from bridge.server.api import json_response
from bridge.server.state import ServerState, state_of
from bridge.silences import SilenceError
from bridge.sinks.slack import SlackNotifier
from bridge.sinks.slack_actions import (
    ACTION_ID_PREFIX,
    ACTIONS,
    Outcome,
    Press,
    after_press,
    expand,
)
from bridge.sources.base import Source
from bridge.store.actions import ActionRecord
from bridge.store.base import Store

log = logging.getLogger(__name__)

TOLERANCE = 5 * 60
# How long the answer waits for the press to be shown (Slack wants it within 3 s, and a
# JTL action may have taken 1.5 s of that already); the edit goes on after it if need be.
ANSWER_WITHIN = 1.0


class _InjectedClock(Clock):
    """slack_sdk's verifier asks its clock for the time: give it the server's (tests)."""

    def __init__(self, now: Callable[[], datetime]):
        self._now = now

    def now(self) -> float:
        return self._now().timestamp()




@dataclass(frozen=True, slots=True)
class _Services:
    store: Store
    config: Config
    session: aiohttp.ClientSession
    sources: Callable[[str], Source]

    def source(self, name: str) -> Source:
        return self.sources(name)


def _refuse(message: str) -> web.HTTPUnauthorized:
    log.warning("Slack interaction refused: %s", message)
    return web.HTTPUnauthorized(text=message)


def verified_sink(state: ServerState, body: bytes, headers: Mapping[str, str]) -> SlackSink:
    """The Slack sink whose signing secret signed this request; 401 otherwise."""
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not stamp.isdigit() or not signature:
        raise _refuse("missing or malformed X-Slack-Request-Timestamp / X-Slack-Signature")
    now = state.clock()
    if abs(now.timestamp() - int(stamp)) > TOLERANCE:
        raise _refuse("X-Slack-Request-Timestamp is more than 5 minutes off: stale or replayed")
    sinks = [s for s in state.runtime.config.sinks
             if isinstance(s, SlackSink) and s.signing_secret is not None]
    clock = _InjectedClock(state.clock)
    for sink in sinks:
        assert sink.signing_secret is not None
        verifier = SignatureVerifier(sink.signing_secret.get_secret_value(), clock=clock)
        if verifier.is_valid(body=body, timestamp=stamp, signature=signature):
            return sink
    if not sinks:
        raise _refuse("no Slack sink has a signing_secret, so no button press can be verified")
    raise _refuse("X-Slack-Signature does not match the signing secret of any Slack sink")


def parse_press(sink: SlackSink, body: bytes, at: datetime) -> Press:
    """The press in a `block_actions` payload; 400 with what is wrong otherwise."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        action = payload["actions"][0]
        # A button sends its `value`; a select menu (JTL's Set interval) the chosen option.
        value = json.loads(action.get("value") or action["selected_option"]["value"])
        user = payload["user"]
        container = payload.get("container") or {}
        channel = container.get("channel_id") or payload["channel"]["id"]
        ts = container.get("message_ts") or payload["message"]["ts"]
        name = str(action["action_id"]).removeprefix(ACTION_ID_PREFIX)
        press = Press(sink=sink.name, action=name, user_id=str(user["id"]),
                      user_name=str(user.get("username") or user.get("name") or ""),
                      source=str(value["source"]), job_id=str(value["job"]),
                      channel=str(channel), message_ts=str(ts), at=at,
                      choice=str(value.get("choice") or ""))
    except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="expected a form-encoded `payload` of type block_actions "
                                 "with a bridge button's action") from None
    if payload.get("type") != "block_actions":
        raise web.HTTPBadRequest(text=f"unsupported interaction type {payload.get('type')!r}")
    if name not in ACTIONS or name not in expand(sink.actions):
        raise web.HTTPForbidden(text=f"action {name!r} is not enabled on sink {sink.name!r}")
    return press


async def interactions(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await request.read()
    sink = verified_sink(state, body, request.headers)
    # Remembered in the store, so a replay is refused by every instance sharing it, until
    # the timestamp check would refuse it anyway.
    stamp = int(request.headers["X-Slack-Request-Timestamp"])
    expires = datetime.fromtimestamp(stamp + TOLERANCE, UTC)
    if not await state.runtime.store.claim_message(
            f"slack:{sink.name}", request.headers["X-Slack-Signature"], expires, state.clock()):
        raise _refuse("this signed request was already accepted (replay)")
    press = parse_press(sink, body, state.clock())
    try:
        services = _Services(store=state.runtime.store, config=state.runtime.config,
                             session=state.runtime.session, sources=state.runtime.source)
        outcome = await ACTIONS[press.action].handler(press, services)
    except SilenceError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    log.info("Slack user %s (%s) pressed %s on %s/%s: %s", press.user_id, press.user_name,
             press.action, press.source, press.job_id, outcome.note)
    await state.runtime.store.record_action(ActionRecord(
        at=press.at, sink=press.sink, source=press.source, job_id=press.job_id,
        action=press.action, user_id=press.user_id, user_name=press.user_name,
        note=outcome.note))
    await _show(state, sink, press, outcome, _message(body))
    return json_response({"ok": True, "action": press.action, "note": outcome.note})


async def list_actions(request: web.Request) -> web.Response:
    """`GET /v1/actions?source=&job=`: the presses recorded, newest first."""
    state = state_of(request)
    records = await state.runtime.store.list_actions(request.query.get("source") or None,
                                                     request.query.get("job") or None)
    return json_response({"actions": [r.as_dict() for r in records]})


def _message(body: bytes) -> tuple[str, list[Mapping[str, Any]]]:
    """The pressed message's text and blocks, as the payload quotes them."""
    message = json.loads(parse_qs(body.decode())["payload"][0]).get("message") or {}
    blocks = message.get("blocks")
    text = message.get("text")
    return (text if isinstance(text, str) else "",
            [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else [])


async def _show(state: ServerState, sink: SlackSink, press: Press, outcome: Outcome,
                message: tuple[str, list[Mapping[str, Any]]]) -> None:
    """Edit the message (its note, the button) and reply in its thread, through the sink's
    own sender: the edit waits at the same `chat.update` budget (and 429 pause) as the
    sink's notifications, so a busy bridge pressed many times stays within Slack's limits.

    Slack wants the answer within 3 seconds or tells the person the press failed: when the
    gate holds the edit longer than `ANSWER_WITHIN` allows, the press is answered and the
    edit follows in the background once the gate lets it in. The press already took
    effect: a Slack failure here is logged, not answered as an error."""
    showing = asyncio.create_task(_edit_and_reply(state, sink, press, outcome, message),
                                  name=f"slack-press:{sink.name}")
    state.background.add(showing)
    showing.add_done_callback(state.background.discard)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(showing), ANSWER_WITHIN)


async def _edit_and_reply(state: ServerState, sink: SlackSink, press: Press, outcome: Outcome,
                          message: tuple[str, list[Mapping[str, Any]]]) -> None:
    text, blocks = message
    notifier = state.runtime.sink(sink.name)
    if not isinstance(notifier, SlackNotifier):  # never for a sink the loader built
        log.warning("sink %s is not a Slack notifier: the %s of %s is not shown", sink.name,
                    press.action, press.user_id)
        return
    try:
        await notifier.call_api("chat.update", {
            "channel": press.channel, "ts": press.message_ts, "text": text or outcome.note,
            "blocks": after_press(blocks, outcome, press.action)})
        await notifier.call_api("chat.postMessage", {
            "channel": press.channel, "thread_ts": press.message_ts, "text": outcome.reply})
    except DeliveryError as exc:
        log.warning("sink %s: could not show the %s of %s in Slack: %s", sink.name,
                    press.action, press.user_id, exc)
