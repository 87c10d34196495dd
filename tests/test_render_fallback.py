"""Never a silent drop (contract section 7): a rule whose template fails when it renders an
event still alerts. Its sink gets the bundled template's message for the event, the failure
is logged and counted, and `bridge test` still reports the template as failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import load_config
from bridge.model import EventKind
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from tests.crash_support import EMAIL, SECRET, TOKEN, eventually, webhook_sink, zendesk_source

# Compiles (so start-up accepts it) but fails on every event: the field does not exist.
BROKEN = "{{ job.fields.no_such_field.deeper }}"


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as sim:
        yield sim


def config_with_broken_template(tmp_path: Path, zendesk: ZendeskSimulator, url: str) -> Path:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "broken.slack.j2").write_text(BROKEN, encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
listen = "127.0.0.1:0"
templates = "{templates}"
{zendesk_source(zendesk, interval="1h")}
{webhook_sink(url)}
[[rules]]
name = "broken-rule"
on = "transition"
template = "broken.slack.j2"
notify = ["pager"]
""", encoding="utf-8")
    return path


def render_errors(bridge: Bridge, rule: str) -> float:
    sample = bridge.metrics.registry.get_sample_value("bridge_render_errors_total",
                                                      {"rule": rule})
    return sample or 0.0


async def test_a_template_failing_at_render_time_still_delivers_the_bundled_message(
    tmp_path: Path, zendesk: ZendeskSimulator, caplog: pytest.LogCaptureFixture,
) -> None:
    zendesk.add_job("job-1", status="working")
    async with WebhookReceiver(secret=SECRET) as receiver:
        config = config_with_broken_template(tmp_path, zendesk, receiver.url)
        caplog.set_level(logging.ERROR, logger="bridge.pipeline")
        polled = asyncio.Event()
        async with Bridge(load_config(config), serve_http=False, drain_timeout=1.0,
                          observers=[lambda outcome: polled.set()]) as bridge:
            await asyncio.wait_for(polled.wait(), 10)  # the start-up poll saw job-1 working
            zendesk.set_job("job-1", status="failed")
            outcome = await bridge.pipeline.poll("zendesk")
            assert [e.on for e in outcome.events] == [EventKind.TRANSITION]

            async def arrived() -> bool:
                return any(200 <= r.status < 300 for r in receiver.requests)

            await eventually(arrived, within=15, what="the bundled message at the receiver")
            assert render_errors(bridge, "broken-rule") == 1
        body = next(r for r in receiver.requests if 200 <= r.status < 300).json()
    assert body["type"] == "job.transition" and body["data"]["rule"] == "broken-rule"
    assert "job-1" in body["data"]["text"] and "failed" in body["data"]["text"]
    assert not receiver.problems
    logged = [r.getMessage() for r in caplog.records if "template failed" in r.getMessage()]
    assert len(logged) == 1 and "no_such_field" in logged[0]
    assert "sent the bundled template's message instead" in logged[0]


async def test_bridge_test_still_reports_the_broken_template_as_failed(
    tmp_path: Path, zendesk: ZendeskSimulator, capsys: pytest.CaptureFixture[str],
) -> None:
    from bridge.cli import main as cli_main

    config = config_with_broken_template(tmp_path, zendesk, "http://127.0.0.1:9/hook")
    with config.open("a", encoding="utf-8") as file:
        file.write("""
[[tests]]
name = "the failure is announced"
event = { on = "transition", source = "zendesk", from = "running", to = "failed" }
expect = [{ sink = "pager" }]
""")
    code = await asyncio.to_thread(cli_main, ["test", "--config", str(config)])
    out = capsys.readouterr()
    assert code == 1, out
    assert "no_such_field" in out.out + out.err
