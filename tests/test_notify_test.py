"""`bridge notify-test SINK [--all-types]` against real receivers on 127.0.0.1: the webhook
receiver (which verifies signatures with `standardwebhooks`) and the fake Slack."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from pathlib import Path

import pytest

from bridge.config.loader import parse_config
from bridge.config.schema import Config
from bridge.notify_test import notify_test
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.webhooks import catalog
from tests.schema_check import SchemaCheck

SECRET = "whsec_" + base64.b64encode(b"notify-test key for tests only!!").decode()
TYPES = [entry.name for entry in catalog.ENTRIES]


def config_text(tmp_path: Path, hook_url: str, *, extra: str = "") -> str:
    return f"""
[bridge]
state = "sqlite:///{tmp_path / 'state.db'}"
templates = "{tmp_path / 'templates'}"

[[sources]]
name = "zd"
kind = "push"

[[sinks]]
name = "pager"
kind = "webhook"
url = "{hook_url}"
secret = "{SECRET}"
{extra}
"""


def load(tmp_path: Path, text: str) -> Config:
    return parse_config(text, str(tmp_path / "rules.toml"), env={})


async def run(config: Config, sink: str, *, all_types: bool = True) -> tuple[int, str]:
    out = io.StringIO()
    code = await notify_test(config, sink, all_types=all_types, out=out)
    return code, out.getvalue()


async def test_all_types_reach_a_webhook_signed_and_matching_their_schema(
    tmp_path: Path, webhook_schema_check: SchemaCheck
) -> None:
    async with WebhookReceiver(secret=SECRET) as hook:
        (tmp_path / "rules.toml").write_text(config_text(tmp_path, hook.url))
        # The real command line, in a process of its own.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "notify-test", "pager", "--all-types",
            "--config", str(tmp_path / "rules.toml"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert [json.loads(r.body)["type"] for r in hook.requests] == TYPES
    assert all(r.verified is True and r.status == 200 for r in hook.requests)
    assert webhook_schema_check.validated == TYPES
    bodies = {body["type"]: body["data"] for body in (json.loads(r.body) for r in hook.requests)}
    reminder = bodies.pop("silence.reminder")  # about silences, not one rule's event
    assert {data["rule"] for data in bodies.values()} == {"notify-test"}
    assert {data.get("source") for data in bodies.values()} == {"zd", None}
    assert bodies["job.group"]["group"] == {"source": "zd"}
    assert reminder["sink"] == "pager" and len(reminder["silences"]) == 2
    lines = out.decode().splitlines()
    assert lines[0] == f"notify-test: {len(TYPES)} sample(s) to sink pager (webhook)"
    for name, request, line in zip(TYPES, hook.requests, lines[1:-1], strict=True):
        assert line.split() == [name, "200", "delivered", "webhook-id", request.webhook_id]
    assert lines[-1] == f"{len(TYPES)} delivered, 0 failed"


async def test_each_failed_answer_is_shown_with_its_status_and_exit_1(tmp_path: Path) -> None:
    async with WebhookReceiver(secret=SECRET) as hook:
        hook.script([200, 503, 410])
        code, out = await run(load(tmp_path, config_text(tmp_path, hook.url)), "pager")
    assert code == 1
    lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert lines["job.appeared"].split()[1:3] == ["200", "delivered"]
    assert lines["job.transition"].split()[1:3] == ["503", "FAILED"]
    assert "(retryable)" in lines["job.transition"] and "HTTP 503" in lines["job.transition"]
    assert lines["job.progress"].split()[1:3] == ["410", "FAILED"]
    assert "(permanent)" in lines["job.progress"]
    assert out.splitlines()[-1] == f"{len(TYPES) - 2} delivered, 2 failed"


async def test_without_all_types_one_transition_is_sent(tmp_path: Path) -> None:
    async with WebhookReceiver(secret=SECRET) as hook:
        code, out = await run(load(tmp_path, config_text(tmp_path, hook.url)), "pager",
                              all_types=False)
    assert code == 0
    [request] = hook.requests
    assert json.loads(request.body)["type"] == "job.transition"
    assert out.splitlines()[-1] == "1 delivered, 0 failed"


async def test_a_second_run_sends_a_fresh_webhook_id(tmp_path: Path) -> None:
    # A receiver de-duplicating on webhook-id would drop a second test sent with the first's.
    async with WebhookReceiver(secret=SECRET) as hook:
        config = load(tmp_path, config_text(tmp_path, hook.url))
        await run(config, "pager", all_types=False)
        await run(config, "pager", all_types=False)
    first, second = hook.requests
    assert first.verified is True and second.verified is True
    assert first.webhook_id != second.webhook_id


async def test_a_sink_with_a_body_template_gets_that_body(tmp_path: Path) -> None:
    async with WebhookReceiver(secret=SECRET) as hook:
        text = config_text(tmp_path, hook.url, extra='body = "pagerduty.json.j2"')
        code, _ = await run(load(tmp_path, text), "pager")
    assert code == 0
    bodies = [json.loads(r.body) for r in hook.requests]
    assert len(bodies) == len(TYPES)
    assert all("routing_key" in body and "type" not in body for body in bodies)


async def test_an_unreachable_webhook_is_reported_per_type(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook:
        url = hook.url
    code, out = await run(load(tmp_path, config_text(tmp_path, url)), "pager", all_types=False)
    assert code == 1
    [line] = out.splitlines()[1:-1]
    assert line.split()[:3] == ["job.transition", "---", "FAILED"]
    assert "(retryable)" in line


async def test_a_slack_sink_gets_one_message_per_type(tmp_path: Path) -> None:
    async with FakeSlack(channels={"#ops": "C0OPS"}) as slack, WebhookReceiver() as hook:
        text = config_text(tmp_path, hook.url) + f"""
[[sinks]]
name = "ops-slack"
kind = "slack"
token = "{slack.token}"
channel = "#ops"
base_url = "{slack.api_url}"
min_interval = "10ms"
"""
        code, out = await run(load(tmp_path, text), "ops-slack")
        posted = slack.roots("C0OPS")
    assert code == 0, out
    assert len(posted) == len(TYPES)
    assert "is down" in (posted[5].text or "")
    assert out.splitlines()[0] == f"notify-test: {len(TYPES)} sample(s) to sink ops-slack (slack)"
    assert all(line.split()[1:3] == ["200", "delivered"] for line in out.splitlines()[1:-1])
    assert hook.requests == []


async def test_an_unknown_sink_names_the_sinks(tmp_path: Path) -> None:
    from bridge.notify_test import UnknownSink

    config = load(tmp_path, config_text(tmp_path, "http://127.0.0.1:9/hook"))
    with pytest.raises(UnknownSink, match=r"no sink 'nope' in .*rules\.toml \(sinks: pager\)"):
        await run(config, "nope")
