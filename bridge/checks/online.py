"""`bridge check --online`: one real request per source and Slack sink, before `run`.

- each polled source is polled once, as `run` would (auth, tenant, cluster, base_url), and
  reports how many jobs it sees; a single-id API without ids is asked for a probe id, which
  checks the credentials and the cluster all the same;
- a Slack sink with a token: `auth.test` (the token and its scopes, from Slack's
  `x-oauth-scopes` header), then the channel in `conversations.list` (does it exist, is the
  bot in it, may it post without being invited);
- webhook sinks and Slack incoming webhooks are only contacted with `--send`: a signed test
  event (`bridge notify-test`'s sample) is the only way to check them.

Every line is one finding: `ok`, `WARN` or `FAIL`, the thing checked and, for a problem,
what to do. Exit 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.config.schema import Config, SinkBase, SlackSink, SourceBase
from bridge.errors import BridgeError
from bridge.sinks.slack_hints import SCOPES_PAGE, next_step
from bridge.sources import build_source, source_kind
from bridge.sources.exchange import describe_url

# An id no API has: a lookup of it checks auth and the cluster and finds nothing.
PROBE_ID = "0"
# Channels read from conversations.list before giving up on finding it.
MAX_CHANNEL_PAGES = 20
# A channel id (public C…, private G…) rather than a name.
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
Level = Literal["ok", "WARN", "FAIL"]


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.level:<4}  {self.what}: {self.detail}"


async def check_online(config: Config, out: TextIO, *, send: bool) -> int:
    findings: list[Finding] = []
    async with aiohttp.ClientSession() as session:
        for source in config.sources:
            findings.append(await _source(source, session))
        for sink in config.sinks:
            findings.extend(await _sink(config, sink, session, send=send))
    for finding in findings:
        out.write(finding.line() + "\n")
    failed = sum(1 for f in findings if f.level == "FAIL")
    out.write(f"{len(findings)} checked online, {failed} failed\n")
    return 1 if failed else 0


# --- sources -------------------------------------------------------------------------------


async def _source(config: SourceBase, session: aiohttp.ClientSession) -> Finding:
    what = f"source {config.name} ({config.kind})"
    if not source_kind(config).capabilities.polled:
        return Finding("ok", what, f"push only: nothing to request; it receives "
                       f"POST /v1/events/{config.name}")
    source = build_source(config, session)
    probing = not source.lists_jobs and not config.ids
    ids = [PROBE_ID] if probing else list(config.ids)
    try:
        async with asyncio.timeout(config.timeout.total_seconds() * 3):
            result = await source.poll(ids)
    except TimeoutError:
        return Finding("FAIL", what, f"no answer within {config.timeout.total_seconds() * 3:.0f}"
                       "s: check base_url and that this host may reach it")
    except BridgeError as exc:
        return Finding("FAIL", what, str(exc))
    where = describe_url(config.base_url) if config.base_url else "the default API URL"
    if probing:
        return Finding("ok", what, f"{where} accepted the credentials (no ids to watch yet: "
                       f"add `ids` or run `bridge watch {config.name} ID`)")
    seen = len(result.observations)
    detail = f"sees {seen} job{'s' if seen != 1 else ''} at {where}"
    if result.missing:
        detail += f"; {len(result.missing)} of the configured ids not found"
    return Finding("ok", what, detail)


# --- sinks ---------------------------------------------------------------------------------


async def _sink(config: Config, sink: SinkBase, session: aiohttp.ClientSession, *,
                send: bool) -> list[Finding]:
    what = f"sink {sink.name} ({sink.kind})"
    if isinstance(sink, SlackSink) and sink.token is not None:
        return await _slack(sink, session, what)
    if not send:
        return [Finding("ok", what, "not contacted: add --send to deliver a signed test "
                        "event (posting is the only way to check it)")]
    return [await _send_sample(config, sink, what)]


async def _send_sample(config: Config, sink: SinkBase, what: str) -> Finding:
    from bridge.notify_test import plan, send

    _, examples = plan(config, sink.name, all_types=False)
    (answer,) = await send(sink, examples)
    if answer.delivered:
        return Finding("ok", what, f"test event delivered (HTTP {answer.status}, webhook-id "
                       f"{answer.delivery_id})")
    return Finding("FAIL", what, str(answer.error))


async def _slack(sink: SlackSink, session: aiohttp.ClientSession, what: str) -> list[Finding]:
    assert sink.token is not None
    client = AsyncWebClient(token=sink.token.get_secret_value(), base_url=sink.base_url,
                            session=session, timeout=max(1, int(sink.timeout.total_seconds())),
                            retry_handlers=[])
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        return [Finding("FAIL", f"{what} auth.test", _slack_problem(exc.response))]
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [Finding("FAIL", f"{what} auth.test", f"Slack did not answer at {sink.base_url} "
                        f"({type(exc).__name__}): check base_url and the network")]
    scopes = _scopes(answer.headers)
    bot = f"@{answer.get('user')}" if answer.get("user") else "the bot"
    findings = [Finding("ok", f"{what} auth.test", f"token of {bot} in workspace "
                        f"{answer.get('team')!s}; scopes: {', '.join(sorted(scopes)) or '?'}")]
    if scopes and "chat:write" not in scopes:
        findings.append(Finding("FAIL", f"{what} scopes", "the token cannot post: "
                                f"{next_step('missing_scope', needed='chat:write')}"))
    findings.append(await _channel(client, sink, scopes, bot, what))
    return findings


async def _channel(client: AsyncWebClient, sink: SlackSink, scopes: set[str], bot: str,
                   what: str) -> Finding:
    channel = str(sink.channel)
    where = f"{what} channel {channel}"
    try:
        found = await _find_channel(client, channel)
    except SlackApiError as exc:
        data = getattr(exc.response, "data", None)
        if isinstance(data, dict) and data.get("error") == "missing_scope":
            return Finding("WARN", where, "not checked: looking at channels needs the "
                           f"channels:read scope (add it under {SCOPES_PAGE}); "
                           "`bridge notify-test` will show whether posting works")
        return Finding("FAIL", where, _slack_problem(exc.response))
    public_ok = "chat:write.public" in scopes
    if found is None:
        return Finding("FAIL", where, "no such public channel: check `channel`; a private "
                       f"channel must have {bot} invited (/invite {bot} in it)")
    if found.get("is_archived"):
        return Finding("FAIL", where, str(next_step("is_archived")))
    if found.get("is_member"):
        return Finding("ok", where, f"{bot} is a member")
    if public_ok:
        return Finding("ok", where, f"{bot} is not a member but may post (chat:write.public)")
    step = str(next_step("not_in_channel")).replace("@your-bot", bot)
    return Finding("FAIL", where, f"{bot} is not in the channel and lacks chat:write.public: "
                   f"{step}")


async def _find_channel(client: AsyncWebClient, channel: str) -> Mapping[str, Any] | None:
    if _CHANNEL_ID.match(channel):
        # An id names one channel, private ones included (those the bot is in).
        try:
            info = await client.conversations_info(channel=channel)
        except SlackApiError as exc:
            data = getattr(exc.response, "data", None)
            if isinstance(data, dict) and data.get("error") == "channel_not_found":
                return None
            raise
        found = info.get("channel")
        return found if isinstance(found, dict) else None
    name = channel.removeprefix("#")
    cursor: str | None = None
    for _ in range(MAX_CHANNEL_PAGES):
        page = await client.conversations_list(types="public_channel", limit=1000,
                                               cursor=cursor, exclude_archived=False)
        for item in page.get("channels") or []:
            if isinstance(item, dict) and name in {item.get("id"), item.get("name")}:
                return item
        cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "") or None
        if cursor is None:
            return None
    return None


def _scopes(headers: Mapping[str, Any]) -> set[str]:
    raw = next((v for k, v in headers.items() if k.lower() == "x-oauth-scopes"), "")
    if isinstance(raw, list):
        raw = ",".join(raw)
    return {s.strip() for s in str(raw).split(",") if s.strip()}


def _slack_problem(response: Any) -> str:
    data = getattr(response, "data", None)
    data = data if isinstance(data, dict) else {}
    code = data.get("error")
    step = next_step(str(code) if code else None, needed=data.get("needed"))
    status = getattr(response, "status_code", None)
    said = f"Slack error {code}" if code else f"Slack answered HTTP {status}"
    return f"{said}: {step}" if step else said
