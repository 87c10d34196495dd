"""The whole pipeline over real sockets: simulator -> poll -> detect -> rules -> outbox -> sink.

Each test runs a real `Bridge` (store on SQLite in a tmp dir) against a Zendesk simulator and
a webhook receiver, drives polls directly (the schedule is set to an hour so it never races
the test) and checks the events and deliveries that come out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from bridge.app import Bridge
from bridge.config import Config, parse_config
from bridge.model import DeliveryStatus, Event, EventKind
from bridge.pipeline import PollOutcome
from bridge.resources import bundled_templates
from bridge.simulators.base import Fault
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from tests.config_support import basic_zendesk_source, config_text, pager_sink, rule
from tests.crash_support import eventually

EMAIL = "ops@example.com"
TOKEN = "zd-api-token-for-tests"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TEMPLATES = bundled_templates()


def make_config(tmp_path: Path, zendesk: ZendeskSimulator, hook_url: str) -> Config:
    text = config_text(
        basic_zendesk_source(zendesk.base_url, email=EMAIL, token=TOKEN),
        pager_sink(hook_url, secret=SECRET, retry={"schedule": ["100ms"], "attempts": 5}),
        rule("job-failed", to=["failed", "cancelled"]),
        state=f"sqlite:///{tmp_path}/state.db", templates=TEMPLATES)
    return parse_config(text, str(tmp_path / "rules.toml"), {})


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[PollOutcome] = []
        self._polled = asyncio.Event()

    def __call__(self, outcome: PollOutcome) -> None:
        self.outcomes.append(outcome)
        self._polled.set()

    async def first_poll(self, within: float) -> None:
        """Wait for the first poll outcome; fail the test if none comes."""
        try:
            async with asyncio.timeout(within):
                await self._polled.wait()
        except TimeoutError:
            raise AssertionError(f"no poll outcome within {within:g}s of start-up") from None

    @property
    def events(self) -> list[Event]:
        return [e for o in self.outcomes for e in o.events]

    def kinds(self) -> list[tuple[EventKind, str | None]]:
        return [(e.on, e.job.id if e.job else None) for e in self.events]

    def clear(self) -> None:
        self.outcomes.clear()


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as sim:
        yield sim


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as hook:
        yield hook


async def started(config: Config, recorder: Recorder) -> Bridge:
    bridge = Bridge(config, serve_http=False, observers=[recorder], drain_timeout=1.0)
    await bridge.__aenter__()
    # The scheduler's first poll runs at start-up; wait for it so the test owns later polls.
    try:
        await recorder.first_poll(within=10)
    except BaseException:
        await bridge.__aexit__(None, None, None)
        raise
    return bridge


async def test_first_observation_emits_only_appeared(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    zendesk.add_job("job-a", status="working", total=10, progress=4)
    zendesk.add_job("job-b", status="failed", message="already failed before we looked")
    recorder = Recorder()
    bridge = await started(make_config(tmp_path, zendesk, receiver.url), recorder)
    try:
        assert sorted(recorder.kinds(), key=str) == sorted(
            [(EventKind.APPEARED, "job-a"), (EventKind.APPEARED, "job-b")], key=str)
        recorder.clear()
        await bridge.pipeline.poll("zendesk")
        assert recorder.kinds() == []
    finally:
        await bridge.__aexit__(None, None, None)
    assert receiver.requests == []


@pytest.mark.parametrize(
    "fault",
    [Fault.SERVER_ERROR, Fault.RATE_LIMITED, Fault.MALFORMED_JSON, Fault.HTML_ERROR,
     Fault.SLOW, Fault.UNAUTHORIZED, Fault.WRONG_SHAPE],
)
async def test_a_failing_api_marks_the_source_down_once_and_changes_no_job(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver, fault: Fault
) -> None:
    zendesk.add_job("job-a", status="working", total=10, progress=4)
    recorder = Recorder()
    bridge = await started(make_config(tmp_path, zendesk, receiver.url), recorder)
    try:
        recorder.clear()
        # A 429 asking for longer than a poll sits out fails that poll at once.
        zendesk.fail_next(fault, times=3, delay=3.0, retry_after="120")
        for _ in range(3):
            outcome = await bridge.pipeline.poll("zendesk")
            assert outcome.error is not None
        assert [e.on for e in recorder.events] == [EventKind.SOURCE_DOWN]
        down = recorder.events[0]
        assert down.reason
        assert TOKEN not in down.reason
        assert bridge.pipeline.jobs("zendesk")["job-a"].status.progress == 40.0
        recorder.clear()
        await bridge.pipeline.poll("zendesk")
        assert [e.on for e in recorder.events] == [EventKind.SOURCE_UP]
    finally:
        await bridge.__aexit__(None, None, None)


async def test_a_job_that_changed_while_bridge_was_down_gives_exactly_one_transition(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    zendesk.add_job("job-a", status="working", total=10, progress=4)
    config = make_config(tmp_path, zendesk, receiver.url)
    first = Recorder()
    bridge = await started(config, first)
    await bridge.__aexit__(None, None, None)
    assert first.kinds() == [(EventKind.APPEARED, "job-a")]

    zendesk.set_job("job-a", status="failed", message="Printer on fire")
    second = Recorder()
    bridge = await started(config, second)
    try:
        await bridge.pipeline.poll("zendesk")
        transitions = [e for e in second.events if e.on is EventKind.TRANSITION]
        assert [(e.from_state, e.to_state) for e in transitions] == [("running", "failed")]
        assert [e.on for e in second.events] == [EventKind.TRANSITION]
        await receiver.wait_for(lambda: len(receiver.requests) >= 1)
    finally:
        await bridge.__aexit__(None, None, None)


async def test_a_transition_reaches_the_webhook_signed_per_standard_webhooks(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    zendesk.add_job("job-a", status="working", total=10, progress=4)
    recorder = Recorder()
    bridge = await started(make_config(tmp_path, zendesk, receiver.url), recorder)
    try:
        zendesk.set_job("job-a", status="failed", progress=6, message="Printer on fire")
        await bridge.pipeline.poll("zendesk")
        await receiver.wait_for(lambda: len(receiver.requests) == 1)
    finally:
        await bridge.__aexit__(None, None, None)
    request = receiver.requests[0]
    payload: dict[str, Any] = Webhook(SECRET).verify(request.body, dict(request.headers))
    assert payload["type"] == "job.transition"
    data = payload["data"]
    assert (data["source"], data["rule"], data["from"], data["to"]) == (
        "zendesk", "job-failed", "running", "failed")
    assert data["job"]["id"] == "job-a"
    assert data["job"]["progress"] == 60.0
    assert "Printer on fire" in data["text"]
    assert json.loads(request.body)["data"]["event_id"] == recorder.events[-1].id


async def test_a_receiver_that_fails_a_few_times_still_gets_the_message_once_per_id(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    zendesk.add_job("job-a", status="working")
    receiver.script([503, 500, 502])
    recorder = Recorder()
    bridge = await started(make_config(tmp_path, zendesk, receiver.url), recorder)
    try:
        zendesk.set_job("job-a", status="killed")
        await bridge.pipeline.poll("zendesk")
        await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 1, within=10)
    finally:
        await bridge.__aexit__(None, None, None)
    ids = {r.webhook_id for r in receiver.requests}
    assert len(receiver.requests) == 4
    assert len(ids) == 1


async def test_a_rule_with_repeat_reminds_while_the_job_stays_failed(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 11, 23, 10, 0, tzinfo=UTC)]
    config = make_config(tmp_path, zendesk, receiver.url)
    rule = config.rules[0].model_copy(update={"from_": ["running"], "repeat": timedelta(hours=1)})
    config = config.model_copy(update={"rules": [rule]})
    zendesk.add_job("job-a", status="working")
    recorder = Recorder()
    bridge = Bridge(config, serve_http=False, observers=[recorder], clock=lambda: now[0])
    async with bridge:
        await bridge.pipeline.poll("zendesk")
        zendesk.set_job("job-a", status="failed", message="Printer on fire")
        await bridge.pipeline.poll("zendesk")

        async def sent() -> bool:
            return not await bridge.store.list_outbox(DeliveryStatus.PENDING)

        # The failure recorded as delivered before the clock jumps: a jump past its claim
        # lease (60 s, on this clock) while it is in flight would make it due and send it again.
        await eventually(sent, within=10, what="the failure recorded as delivered")
        now[0] += timedelta(minutes=30)
        await bridge.pipeline.poll("zendesk")
        assert len([n for o in recorder.outcomes for n in o.notifications]) == 1
        now[0] += timedelta(minutes=31)
        await bridge.pipeline.poll("zendesk")
        reminders = [e for e in recorder.events if e.repeat_of == "job-failed"]
        assert len(reminders) == 1
        await receiver.wait_for(lambda: len(receiver.requests) == 2)
    first, second = (json.loads(r.body)["data"] for r in receiver.requests)
    assert first["event_id"] != second["event_id"]
    assert second["job"]["state"] == "failed"
