"""Golden files: what the project's default templates send for representative events.

Run with BRIDGE_UPDATE_GOLDEN=1 to rewrite tests/golden/*.txt after a deliberate change,
then review the diff like any other code change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.config import parse_config
from bridge.config.schema import Config, Rule
from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.render import Renderer
from bridge.resources import bundled_templates
from tests.config_support import sink, table
from tests.test_render import SLACK_AND_HOOK

TEMPLATES = bundled_templates()
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BRIDGE_UPDATE_GOLDEN") == "1"
AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

CONFIG = (table("bridge", templates=TEMPLATES) + SLACK_AND_HOOK
          + sink("pagerduty", "webhook", url="https://events.pagerduty.invalid/v2/enqueue",
                 body="pagerduty.json.j2"))


def _job(state: JobState, **fields: Any) -> JobStatus:
    defaults: dict[str, Any] = {"id": "8b72", "raw_state": str(state), "progress": 40.0,
                                "url": "https://acme.zendesk.com/api/v2/job_statuses/8b72"}
    return JobStatus(state=state, **(defaults | fields))


def _event(on: EventKind, **fields: Any) -> Event:
    defaults: dict[str, Any] = {"id": f"evt_{on}", "on": on, "source": "zendesk", "at": AT,
                                "first_seen": AT - timedelta(minutes=25)}
    return Event(**(defaults | fields))


RUNNING = _job(JobState.RUNNING, raw_state="working")
EVENTS: dict[str, Event] = {
    "failed": _event(
        EventKind.TRANSITION,
        job=_job(JobState.FAILED, raw_state="SleepingError",
                 message="Printer on fire: <stderr> & \"tray 2\"\nretry in 5 minutes",
                 failed_items=3, run=4),
        previous=RUNNING, from_state=JobState.RUNNING, to_state=JobState.FAILED,
        duration=timedelta(hours=1, minutes=2, seconds=5), source="jtl-worker",
    ),
    "succeeded": _event(
        EventKind.TRANSITION,
        job=_job(JobState.SUCCEEDED, raw_state="completed", progress=100.0, url=None),
        previous=RUNNING, from_state=JobState.RUNNING, to_state=JobState.SUCCEEDED,
        duration=timedelta(minutes=4, seconds=31),
    ),
    "reminder": _event(
        EventKind.TRANSITION, job=_job(JobState.FAILED, message="Printer on fire"),
        to_state=JobState.FAILED, duration=timedelta(hours=3), repeat_of="job-failed",
        reason="repeat: still failed (rule job-failed)",
    ),
    "progress": _event(EventKind.PROGRESS, job=_job(JobState.RUNNING, raw_state="working",
                                                    progress=75.0),
                       previous=RUNNING, duration=timedelta(minutes=6)),
    "stalled": _event(EventKind.STALLED, job=RUNNING, previous=RUNNING,
                      duration=timedelta(minutes=31), reason="no progress for 15m"),
    "appeared": _event(EventKind.APPEARED, job=_job(JobState.PENDING, raw_state="queued",
                                                    progress=None)),
    "vanished": _event(EventKind.VANISHED, job=RUNNING, previous=RUNNING,
                       duration=timedelta(minutes=40),
                       reason="missing from the job list (Zendesk keeps the last 100 jobs)"),
    "source_down": _event(EventKind.SOURCE_DOWN, source="esales",
                          reason="HTTP 503 Service Unavailable from GET /api/v1/imports/1234"),
    "source_up": _event(EventKind.SOURCE_UP, source="esales", duration=timedelta(minutes=7)),
}

CASES = [
    ("transition.slack", "failed"),
    ("transition.slack", "succeeded"),
    ("transition.slack", "reminder"),
    ("transition.blocks", "failed"),
    ("transition.blocks", "succeeded"),
    ("progress.slack", "progress"),
    ("progress.blocks", "progress"),
    ("stalled.slack", "stalled"),
    ("stalled.blocks", "stalled"),
    ("appeared.slack", "appeared"),
    ("appeared.blocks", "appeared"),
    ("vanished.slack", "vanished"),
    ("vanished.blocks", "vanished"),
    ("source_down.slack", "source_down"),
    ("source_down.blocks", "source_down"),
    ("source_up.slack", "source_up"),
    ("source_up.blocks", "source_up"),
]
WEBHOOK_CASES = [
    ("hook", "transition.slack", "failed"),
    ("pagerduty", "transition.slack", "failed"),
    ("pagerduty", "transition.slack", "succeeded"),
    ("pagerduty", "source_down.slack", "source_down"),
    ("pagerduty", "source_up.slack", "source_up"),
]


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(CONFIG, str(TEMPLATES.parent / "rules.toml"), env={})


@pytest.fixture(scope="module")
def renderer(config: Config) -> Renderer:
    return Renderer(config)


def _rule(template: str, event: Event, sink: str) -> Rule:
    return Rule.model_validate({"name": "job-failed", "on": str(event.on),
                                "template": f"{template}.j2", "notify": [sink]})


def _show(payload: Mapping[str, Any]) -> str:
    if "body" in payload:
        return json.dumps(json.loads(payload["body"]), indent=2, ensure_ascii=False) + "\n"
    if "blocks" in payload:
        blocks = json.dumps(payload["blocks"], indent=2, ensure_ascii=False)
        return f"text: {payload['text']}\n\n{blocks}\n"
    return str(payload["text"]) + "\n"


def _compare(name: str, got: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; run with BRIDGE_UPDATE_GOLDEN=1 to create it"
    assert got == path.read_text(encoding="utf-8"), (
        f"{name}: output differs from {path}; if the change is deliberate, rerun with "
        "BRIDGE_UPDATE_GOLDEN=1 and review the diff")


@pytest.mark.parametrize(("template", "event"), CASES)
def test_default_slack_template_matches_golden(
    renderer: Renderer, config: Config, template: str, event: str
) -> None:
    ev = EVENTS[event]
    payload = renderer.render(_rule(template, ev, "slack"), ev, config.sink("slack"))
    _compare(f"{template}.{event}", _show(payload))


@pytest.mark.parametrize(("sink", "template", "event"), WEBHOOK_CASES)
def test_webhook_body_matches_golden(
    renderer: Renderer, config: Config, sink: str, template: str, event: str
) -> None:
    ev = EVENTS[event]
    payload = renderer.render(_rule(template, ev, sink), ev, config.sink(sink))
    _compare(f"{sink}.{template}.{event}", _show(payload))


def _check_text(obj: Mapping[str, Any], where: str) -> None:
    text = obj.get("text")
    assert isinstance(text, str), f"{where}: text must be a string"
    assert 0 < len(text) <= 3000, f"{where}: Slack needs 1..3000 characters"
    assert obj.get("type") in ("mrkdwn", "plain_text"), f"{where}: text type"


@pytest.mark.parametrize(("template", "event"), [c for c in CASES if ".blocks" in c[0]])
def test_default_block_kit_templates_give_blocks_slack_accepts(
    renderer: Renderer, config: Config, template: str, event: str
) -> None:
    ev = EVENTS[event]
    payload = renderer.render(_rule(template, ev, "slack"), ev, config.sink("slack"))
    assert payload["text"], "a fallback text for notifications"
    assert 0 < len(payload["blocks"]) <= 50
    for i, block in enumerate(payload["blocks"]):
        if block["type"] == "section":
            _check_text(block["text"], f"blocks[{i}]")
        elif block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
            for j, element in enumerate(block["elements"]):
                _check_text(element, f"blocks[{i}].elements[{j}]")
        else:
            pytest.fail(f"unexpected block type {block['type']!r}")


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_kind_has_a_text_and_a_block_kit_template(kind: EventKind) -> None:
    assert (TEMPLATES / f"{kind}.slack.j2").is_file()
    assert (TEMPLATES / f"{kind}.blocks.j2").is_file()


def test_every_golden_file_is_still_produced() -> None:
    expected = {f"{t}.{e}.txt" for t, e in CASES}
    expected |= {f"{s}.{t}.{e}.txt" for s, t, e in WEBHOOK_CASES}
    assert {p.name for p in GOLDEN.glob("*.txt")} == expected
