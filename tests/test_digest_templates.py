"""The bundled digest templates name every job of a big group, failures first."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.checks.samples import FIXED_NOW, sample_event
from bridge.config.loader import parse_config
from bridge.groups.digest import Digests
from bridge.groups.keys import group_key
from bridge.groups.model import GroupedEvent, OpenGroup, group_id
from bridge.model import EventKind, JobState, JobStatus
from bridge.render import Renderer

CONFIG = """
[[sinks]]
name = "ops-slack"
kind = "slack"
token = "xoxb-test"
channel = "#ops"
mode = "post"

[[rules]]
name = "outcomes"
on = "transition"
to = ["succeeded", "failed"]
template = "transition.slack.j2"
notify = ["ops-slack"]
group_by = ["source"]
group_template = "{template}"
"""


def digest(template: str, states: list[JobState]) -> dict[str, object]:
    """The digest of one group holding a job per state given, in that order."""
    config = parse_config(CONFIG.format(template=template), "rules.toml", env={})
    rule = config.rules[0]
    first = sample_event(EventKind.TRANSITION, rule=rule)
    assert first.job is not None
    events = [replace(first, id=f"evt_{i}", at=FIXED_NOW + timedelta(seconds=i), to_state=state,
                      job=JobStatus(id=f"job-{i:03d}", state=state, raw_state=str(state),
                                    url=f"https://example.com/jobs/{i}"))
              for i, state in enumerate(states)]
    key = group_key(rule, first)
    group = OpenGroup(id=group_id(rule.name, key, "evt_0"), rule=rule.name, key=key,
                      first_at=FIXED_NOW, due_at=FIXED_NOW, flushes=0,
                      events=[GroupedEvent(event=e) for e in events])
    [notification] = Digests(config, Renderer(config)).render(group, FIXED_NOW).notifications
    return dict(notification.payload)


# 80 jobs: successes, with two failures late in the group.
STATES = [JobState.SUCCEEDED] * 70 + [JobState.FAILED] + [JobState.SUCCEEDED] * 8 + [
    JobState.FAILED]


def job_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "job-" in line]


def test_the_plain_digest_lists_failures_first() -> None:
    lines = job_lines(str(digest("digest.slack.j2", STATES)["text"]))
    assert "job-070" in lines[0] and "job-079" in lines[1]
    assert all("*failed*" in line for line in lines[:2])


def test_the_plain_digest_names_every_job_beyond_the_first_25_by_state() -> None:
    text = str(digest("digest.slack.j2", STATES)["text"])
    assert all(f"job-{i:03d}" in text for i in range(len(STATES)))
    [more] = [line for line in job_lines(text) if "more *succeeded*" in line]
    assert more.startswith("✅ 55 more *succeeded*: `job-")
    assert "… and" not in text


@pytest.mark.parametrize("count", [80, 300])
def test_the_block_kit_digest_names_the_jobs_within_slacks_block_limits(count: int) -> None:
    payload = digest("digest.blocks.j2", [JobState.SUCCEEDED] * (count - 1) + [JobState.FAILED])
    blocks = payload["blocks"]
    assert isinstance(blocks, list)
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert "job-" + f"{count - 1:03d}" in texts[1]  # the failure first
    # Slack: at most 50 blocks, at most 3000 characters in a section's text.
    assert len(blocks) <= 50
    assert max(len(t) for t in texts) <= 3000
    named = sum(f"job-{i:03d}" in json.dumps(blocks) for i in range(count))
    assert named == min(count, 80)
    if count > 80:
        assert texts[-1].endswith(f"… and {count - 80} more")
