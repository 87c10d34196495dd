"""`bridge check --online` over real sockets: each problem one line saying what to do,
exit 1; every source polled once; webhooks contacted only with --send."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bridge.checks.online import check_online
from bridge.config import parse_config
from bridge.config.schema import Config
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator

TOKEN = "xoxb-online-0123456789"
SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC0xMjM0NTY="


def config(tmp_path: Path, *, zendesk: str, slack: str, token: str = TOKEN,
           password: str = "zd-token-123456", hook: str | None = None,
           channel: str = "#ops-alerts") -> Config:
    webhook = f"""
[[sinks]]
name = "pager"
kind = "webhook"
url = "{hook}"
secret = "{SECRET}"
""" if hook else ""
    text = f"""
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "{zendesk}"
[sources.auth]
type = "basic"
username = "ops@acme.com/token"
password = "{password}"

[[sinks]]
name = "ops-slack"
kind = "slack"
token = "{token}"
channel = "{channel}"
base_url = "{slack}"
{webhook}
[[rules]]
name = "down"
on = "source_down"
template = "source_down.slack.j2"
notify = ["ops-slack"]
"""
    (tmp_path / "rules.toml").write_text(text)
    return parse_config(text, str(tmp_path / "rules.toml"), {})


async def online(config: Config, *, send: bool = False) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await check_online(config, out, send=send)
    return code, out.getvalue().splitlines()


@pytest.fixture
async def zendesk() -> ZendeskSimulator:
    async with ZendeskSimulator(email="ops@acme.com", api_token="zd-token-123456") as sim:
        sim.add_job(status="working")
        sim.add_job(status="completed")
        yield sim  # type: ignore[misc]


async def test_a_healthy_setup_reports_jobs_seen_and_the_bot_in_its_channel(
        tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    async with FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS"}) as slack:
        code, lines = await online(config(tmp_path, zendesk=zendesk.base_url,
                                          slack=slack.api_url))
    assert code == 0, lines
    assert lines == [
        f"ok    source zendesk (zendesk): sees 2 jobs at {zendesk.base_url}",
        "ok    sink ops-slack (slack) auth.test: token of @bridge in workspace Fake; scopes: "
        "channels:read, chat:write, chat:write.public",
        "ok    sink ops-slack (slack) channel #ops-alerts: @bridge is a member",
        "3 checked online, 0 failed",
    ]
    assert zendesk.request_count() == 1  # one request per source
    assert slack.calls_to("chat.postMessage", ok_only=False) == []  # nothing posted


async def test_wrong_zendesk_credentials_and_a_wrong_slack_token_each_say_what_to_fix(
        tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    async with FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS"}) as slack:
        code, lines = await online(config(tmp_path, zendesk=zendesk.base_url,
                                          slack=slack.api_url, password="wrong-password-1",
                                          token="xoxb-wrong-0123456789"))
    assert code == 1
    source, slack_line, total = lines
    assert source.startswith("FAIL  source zendesk (zendesk): ")
    assert "HTTP 401" in source and "check the username (you@example.com/token)" in source
    assert slack_line == (
        "FAIL  sink ops-slack (slack) auth.test: Slack error invalid_auth: the token is not "
        "valid: set `token` to the Bot User OAuth Token (xoxb-…) on your app's OAuth & "
        "Permissions page")
    assert total == "2 checked online, 2 failed"


async def test_an_uninvited_bot_without_chat_write_public_is_told_to_invite_the_bot(
        tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    async with FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS"},
                         scopes=("chat:write", "channels:read"), member_of=frozenset()) as slack:
        code, lines = await online(config(tmp_path, zendesk=zendesk.base_url,
                                          slack=slack.api_url))
    assert code == 1
    assert lines[2] == (
        "FAIL  sink ops-slack (slack) channel #ops-alerts: @bridge is not in the channel and "
        "lacks chat:write.public: invite the bot: /invite @bridge in the channel (or add the "
        "chat:write.public scope under OAuth & Permissions > Bot Token Scopes, then reinstall "
        "the app)")


async def test_a_token_missing_scopes_names_the_scope_to_add(
        tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    async with FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS"},
                         scopes=("users:read",)) as slack:
        code, lines = await online(config(tmp_path, zendesk=zendesk.base_url,
                                          slack=slack.api_url))
    assert code == 1
    assert lines[2] == ("FAIL  sink ops-slack (slack) scopes: the token cannot post: add the "
                        "scope chat:write under OAuth & Permissions > Bot Token Scopes, then "
                        "reinstall the app")
    assert lines[3].startswith("WARN  sink ops-slack (slack) channel #ops-alerts: not checked: "
                               "looking at channels needs the channels:read scope")


async def test_a_webhook_is_posted_a_signed_test_event_only_with_send(
        tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    async with FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS"}) as slack, \
            WebhookReceiver(secret=SECRET) as hook:
        loaded = config(tmp_path, zendesk=zendesk.base_url, slack=slack.api_url, hook=hook.url)
        code, lines = await online(loaded)
        assert code == 0
        assert lines[3] == ("ok    sink pager (webhook): not contacted: add --send to deliver "
                            "a signed test event (posting is the only way to check it)")
        assert hook.requests == []
        code, lines = await online(loaded, send=True)
        assert code == 0, lines
        assert lines[3].startswith("ok    sink pager (webhook): test event delivered (HTTP 2")
        assert len([r for r in hook.requests if r.status < 300]) == 1
        assert hook.problems == []  # verified with the standardwebhooks package


async def test_a_channel_given_by_id_is_looked_up_by_id(
        tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    async with FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS1234"}) as slack:
        code, lines = await online(config(tmp_path, zendesk=zendesk.base_url,
                                          slack=slack.api_url, channel="C0OPS1234"))
        assert code == 0, lines
        assert lines[2] == "ok    sink ops-slack (slack) channel C0OPS1234: @bridge is a member"
        assert slack.calls_to("conversations.info")
        code, lines = await online(config(tmp_path, zendesk=zendesk.base_url,
                                          slack=slack.api_url, channel="C0NOPE999"))
    assert code == 1
    assert lines[2].startswith("FAIL  sink ops-slack (slack) channel C0NOPE999: no such public "
                               "channel: check `channel`; a private channel must have @bridge "
                               "invited")
