"""FakeSlack answers what a half set-up Slack app gets: `missing_scope` (with `needed`),
`not_in_channel` for a bot nobody invited, and `invalid_auth` for a wrong token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.simulators.slack import FakeSlack


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(session: aiohttp.ClientSession, slack: FakeSlack, method: str,
               token: str | None = None, **body: Any) -> tuple[dict[str, Any], str | None]:
    headers = {"Authorization": f"Bearer {token or slack.token}"}
    async with session.post(slack.api_url + method, json=body, headers=headers) as answer:
        return await answer.json(), answer.headers.get("x-oauth-scopes")


async def test_a_token_without_chat_write_gets_missing_scope_naming_it(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSlack(channels={"#ops": "C0OPS"}, scopes=("channels:read",)) as slack:
        data, scopes = await call(session, slack, "auth.test")
        assert data["ok"] and scopes == "channels:read"
        data, _ = await call(session, slack, "chat.postMessage", channel="#ops", text="x")
        assert data == {"ok": False, "error": "missing_scope", "needed": "chat:write",
                        "provided": "channels:read"}
        assert slack.roots("#ops") == []


async def test_an_uninvited_bot_gets_not_in_channel_unless_it_may_post_publicly(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSlack(channels={"#ops": "C0OPS", "#dev": "C0DEV"}, scopes=("chat:write",),
                         member_of=frozenset({"#dev"})) as slack:
        data, _ = await call(session, slack, "chat.postMessage", channel="#ops", text="x")
        assert data == {"ok": False, "error": "not_in_channel"}
        data, _ = await call(session, slack, "chat.postMessage", channel="C0DEV", text="x")
        assert data["ok"]
    async with FakeSlack(channels={"#ops": "C0OPS"}, member_of=frozenset()) as slack:
        data, _ = await call(session, slack, "chat.postMessage", channel="#ops", text="x")
        assert data["ok"]  # chat:write.public is among the default scopes
        listed, _ = await call(session, slack, "conversations.list")
        assert listed["channels"][0] == {"id": "C0OPS", "name": "ops", "is_channel": True,
                                               "is_private": False, "is_member": False}


async def test_a_wrong_token_gets_invalid_auth(session: aiohttp.ClientSession) -> None:
    async with FakeSlack() as slack:
        data, _ = await call(session, slack, "auth.test", token="xoxb-wrong")
        assert data == {"ok": False, "error": "invalid_auth"}
