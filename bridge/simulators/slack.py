"""A fake Slack: the Web API methods bridge uses, and an incoming-webhook endpoint.

`FakeSlack` is an aiohttp server on 127.0.0.1 that answers `auth.test`, `chat.postMessage`
and `chat.update` the way Slack does (form or JSON bodies, a bearer token, `ok: false` with
Slack's error codes), with scripted faults: 429 + Retry-After for the next N calls, a failure
(500 by default) of the next N calls that match, and a hold that keeps answers waiting until
released. It enforces Slack's documented rate limits
(`SlackLimits`: `chat.postMessage` about one per second per channel with short bursts,
`chat.update` Tier 3 per workspace token, incoming webhooks one per second), answering a
call over its budget with 429 and an integer `Retry-After` as Slack does; `limits=None`
turns them off. It records every call and the current state of each channel (messages,
edits, thread replies), so tests and `bridge demo` can show what people would see. Point
slack_sdk at `fake.api_url`; post webhooks to `fake.webhook_url`. Independent of the
pipeline: it imports only its own parts, `slack_channels` (messages and Slack's content
checks) and `slack_limits` (the budgets).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.simulators.slack_channels import (
    WEBHOOK_CHANNEL,
    Channels,
    FakeMessage,
    SlackError,
    check_content,
)
from bridge.simulators.slack_limits import SLACK_LIMITS, Budgets, SlackLimits, whole_seconds

# What a bot token created with the README's five steps holds.
DEFAULT_SCOPES = ("chat:write", "chat:write.public", "channels:read")

__all__ = ["WEBHOOK_CHANNEL", "FakeCall", "FakeMessage", "FakeSlack", "SlackLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeCall:
    """One request as received, and the status it was answered with."""

    method: str
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    status: int
    error: str | None = None
    at: float = 0.0
    # The message a successful chat.postMessage or chat.update wrote (channel id, ts), so a
    # reader of the record can follow each message through its versions.
    channel: str | None = None
    ts: str | None = None


@dataclass(slots=True)
class _Script:
    rate_limited: int = 0
    retry_after: str = "1"
    held: asyncio.Event | None = None
    # How many more requests `hold(calls=)` keeps waiting; None: every one.
    hold_left: int | None = None
    # `fail()`: how many more matching calls fail, which ones, and with what.
    failing: int = 0
    fail_when: Callable[[str, Mapping[str, Any]], bool] | None = None
    fail_status: int = 500
    fail_error: str = "internal_error"


class FakeSlack:
    """`async with FakeSlack() as slack:` serves on 127.0.0.1 until the block ends."""

    def __init__(
        self,
        *,
        token: str = "xoxb-fake-token",
        channels: Mapping[str, str] | None = None,
        strict_channels: bool = False,
        clock: Callable[[], float] = time.monotonic,
        limits: SlackLimits | None = SLACK_LIMITS,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        member_of: frozenset[str] | None = None,
    ):
        """`channels` maps names ("#ops") to ids ("C0OPS"); with `strict_channels`, any
        other channel answers `channel_not_found`, else a new id is made up for it.
        `limits=None` turns rate limiting off (tests that send faster than Slack allows).
        `scopes` are the token's OAuth scopes (a call needing another answers
        `missing_scope`); `member_of` lists the channels (names or ids) the bot was invited
        to, None meaning all of them: posting elsewhere without `chat:write.public` answers
        `not_in_channel`, as Slack does."""
        self.token = token
        self.scopes = scopes
        self.member_of = member_of
        self.channels = Channels(channels, strict=strict_channels)
        self._clock = clock
        self.calls: list[FakeCall] = []
        self._script = _Script()
        self.limits = limits
        self._budgets = Budgets(limits, clock) if limits is not None else None
        # Requests waiting behind `hold()`.
        self.held = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        # Read methods (conversations.list) come as GET with query arguments from slack_sdk.
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/services/{team}/{bot}/{secret}", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """The `base_url` for slack_sdk (ends with a slash)."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T0FAKE/B0FAKE/fakewebhooksecret"

    # --- scripting --------------------------------------------------------------------------

    def rate_limit(self, calls: int, retry_after: float | str = 1) -> None:
        """Answer the next `calls` requests with 429 and this Retry-After."""
        self._script.rate_limited = calls
        self._script.retry_after = str(retry_after)

    def fail(self, calls: int = 1, *,
             when: Callable[[str, Mapping[str, Any]], bool] | None = None,
             status: int = 500, error: str = "internal_error") -> None:
        """Answer the next `calls` Web API calls for which `when(method, body)` holds (every
        call without it) with `status` and `error`, doing nothing: a Slack outage hitting,
        say, the third thread reply after two went through."""
        script = self._script
        script.failing, script.fail_when = calls, when
        script.fail_status, script.fail_error = status, error

    def hold(self, calls: int | None = None) -> None:
        """Keep every answer waiting until `release()` (to pile up sends behind one call),
        or only the next `calls` ones (a call that times out on the client while the calls
        after it are answered at once, whatever the machine's load)."""
        if self._script.held is None:
            self._script.held = asyncio.Event()
        self._script.hold_left = calls

    def release(self) -> None:
        if self._script.held is not None:
            self._script.held.set()
            self._script.held, self._script.hold_left = None, None

    def delete_message(self, channel: str, ts: str) -> None:
        """What a person deleting the message in Slack does: later edits find nothing."""
        self.channels.delete(channel, ts)

    # --- views ------------------------------------------------------------------------------

    @property
    def messages(self) -> dict[tuple[str, str], FakeMessage]:
        """Every message by (channel id, ts), oldest first."""
        return self.channels.messages

    def channel_id(self, channel: str) -> str:
        return self.channels.channel_id(channel)

    def roots(self, channel: str) -> list[FakeMessage]:
        """Top-level messages of a channel, oldest first (by name or id)."""
        return self.channels.roots(channel)

    def replies(self, channel: str, ts: str) -> list[FakeMessage]:
        return self.channels.replies(channel, ts)

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[FakeCall]:
        return [c for c in self.calls
                if c.method == method and (not ok_only or (c.status == 200 and c.error is None))]

    def render(self) -> str:
        """The channels as a person would read them, for the demo and test failures."""
        return self.channels.render()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` holds after some call (tests wait on conditions)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    # --- handlers ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await _read_body(request)
        headers = dict(request.headers)
        await self._wait_if_held()
        if self._script.rate_limited > 0:
            self._script.rate_limited -= 1
            await self._record(method, body, headers, 429, "ratelimited")
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": self._script.retry_after})
        script = self._script
        if script.failing > 0 and (script.fail_when is None or script.fail_when(method, body)):
            script.failing -= 1
            await self._record(method, body, headers, script.fail_status, script.fail_error)
            return web.json_response({"ok": False, "error": script.fail_error},
                                     status=script.fail_status)
        try:
            self._authorize(request, body)
            wait = self._over_budget(method, body, request)
            if wait > 0:
                await self._record(method, body, headers, 429, "ratelimited")
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": whole_seconds(wait)})
            answer = self._dispatch(method, body)
        except SlackError as exc:
            await self._record(method, body, headers, exc.status, exc.code)
            return web.json_response({"ok": False, "error": exc.code, **exc.extra},
                                     status=exc.status)
        await self._record(method, body, headers, 200, channel=answer.get("channel"),
                           ts=answer.get("ts"))
        # Slack names the token's scopes on every Web API answer.
        return web.json_response({"ok": True, **answer},
                                 headers={"x-oauth-scopes": ",".join(self.scopes)})

    async def _webhook(self, request: web.Request) -> web.Response:
        headers = dict(request.headers)
        try:
            body = await request.json()
        except ValueError:
            body = None
        await self._wait_if_held()
        if self._script.rate_limited > 0:
            self._script.rate_limited -= 1
            await self._record("incoming-webhook", body or {}, headers, 429, "rate_limited")
            return web.Response(status=429, text="rate_limited",
                                headers={"Retry-After": self._script.retry_after})
        wait = self._webhook_over_budget(request.path)
        if wait > 0:
            await self._record("incoming-webhook", body or {}, headers, 429, "rate_limited")
            return web.Response(status=429, text="rate_limited",
                                headers={"Retry-After": whole_seconds(wait)})
        if not isinstance(body, dict):
            await self._record("incoming-webhook", {}, headers, 400, "invalid_payload")
            return web.Response(status=400, text="invalid_payload")
        try:
            check_content(body)
        except SlackError as exc:
            await self._record("incoming-webhook", body, headers, 400, exc.code)
            return web.Response(status=400, text=exc.code)
        self.channels.store(WEBHOOK_CHANNEL, body, thread_ts=None)
        await self._record("incoming-webhook", body, headers, 200)
        return web.Response(text="ok")

    async def _wait_if_held(self) -> None:
        held, left = self._script.held, self._script.hold_left
        if held is None or left == 0:
            return
        if left is not None:
            self._script.hold_left = left - 1
        self.held += 1
        async with self._changed:
            self._changed.notify_all()
        try:
            await held.wait()
        finally:
            self.held -= 1

    def _over_budget(self, method: str, body: Mapping[str, Any], request: web.Request) -> float:
        """Seconds until `method` fits Slack's budget again; 0 spends one call of it."""
        if self._budgets is None:
            return 0.0
        channel = str(body.get("channel"))
        # Per channel: a name and its id are one channel.
        channel = self.channels.ids.get(channel, channel)
        return self._budgets.api_call(_token(request, body) or "", method, channel)

    def _webhook_over_budget(self, path: str) -> float:
        return 0.0 if self._budgets is None else self._budgets.webhook(path)

    def _authorize(self, request: web.Request, body: Mapping[str, Any]) -> None:
        token = _token(request, body)
        if not token:
            raise SlackError("not_authed")
        if token != self.token or not str(token).startswith("xox"):
            raise SlackError("invalid_auth")

    def _dispatch(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"url": "https://fake.slack.com/", "team": "Fake", "user": "bridge",
                    "team_id": "T0FAKE", "user_id": "U0BRIDGE", "bot_id": "B0BRIDGE"}
        if method == "chat.postMessage":
            self._need_scope("chat:write")
            self._need_membership(body)
            return self.channels.post(body)
        if method == "chat.update":
            self._need_scope("chat:write")
            return self.channels.update(body)
        if method == "conversations.list":
            self._need_scope("channels:read")
            return {"channels": [self._channel_info(name, cid)
                                 for name, cid in self.channels.ids.items()],
                    "response_metadata": {"next_cursor": ""}}
        if method == "conversations.info":
            self._need_scope("channels:read")
            cid = str(body.get("channel"))
            name = next((n for n, c in self.channels.ids.items() if c == cid), None)
            if name is None:
                raise SlackError("channel_not_found")
            return {"channel": self._channel_info(name, cid)}
        raise SlackError("unknown_method", status=404)

    def _need_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise SlackError("missing_scope", needed=scope, provided=",".join(self.scopes))

    def _need_membership(self, body: Mapping[str, Any]) -> None:
        channel = self.channels.resolve(body.get("channel"))
        name = next((n for n, c in self.channels.ids.items() if c == channel), channel)
        if not self._is_member(name, channel) and "chat:write.public" not in self.scopes:
            raise SlackError("not_in_channel")

    def _is_member(self, name: str, cid: str) -> bool:
        return self.member_of is None or bool({name, cid} & self.member_of)

    def _channel_info(self, name: str, cid: str) -> dict[str, Any]:
        return {"id": cid, "name": name.lstrip("#"), "is_channel": True, "is_private": False,
                "is_member": self._is_member(name, cid)}

    async def _record(self, method: str, body: Mapping[str, Any], headers: Mapping[str, str],
                      status: int, error: str | None = None, *, channel: object = None,
                      ts: object = None) -> None:
        self.calls.append(FakeCall(
            method=method, body=body, headers=headers, status=status, error=error,
            at=self._clock(), channel=channel if isinstance(channel, str) else None,
            ts=ts if isinstance(ts, str) else None))
        async with self._changed:
            self._changed.notify_all()


def _token(request: web.Request, body: Mapping[str, Any]) -> str | None:
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
    token = token or body.get("token")
    return str(token) if token else None


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}
