"""Urgency: each notification's priority comes from its event, or from its rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.config import parse_config
from bridge.errors import ConfigErrors
from bridge.model import Event, EventKind, JobState, JobStatus, Notification, Priority

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def event(on: EventKind, state: JobState | None = JobState.RUNNING) -> Event:
    job = JobStatus(id="j", state=state, raw_state=str(state)) if state is not None else None
    return Event(id="e", on=on, source="src", at=T0, job=job,
                 to_state=state if on is EventKind.TRANSITION else None)


@pytest.mark.parametrize(
    ("on", "state", "expected"),
    [
        (EventKind.TRANSITION, JobState.FAILED, Priority.HIGH),
        (EventKind.TRANSITION, JobState.CANCELLED, Priority.HIGH),
        (EventKind.STALLED, JobState.RUNNING, Priority.HIGH),
        (EventKind.VANISHED, JobState.RUNNING, Priority.HIGH),
        (EventKind.SOURCE_DOWN, None, Priority.HIGH),
        (EventKind.APPEARED, JobState.FAILED, Priority.HIGH),  # first seen already failed
        (EventKind.TRANSITION, JobState.SUCCEEDED, Priority.NORMAL),
        (EventKind.SOURCE_UP, None, Priority.NORMAL),
        (EventKind.APPEARED, JobState.PENDING, Priority.LOW),
        (EventKind.TRANSITION, JobState.RUNNING, Priority.LOW),
        (EventKind.PROGRESS, JobState.RUNNING, Priority.LOW),
    ],
)
def test_priority_follows_the_event(on: EventKind, state: JobState | None,
                                    expected: Priority) -> None:
    assert Priority.of(event(on, state)) is expected


def test_ranks_sort_the_most_urgent_first() -> None:
    assert sorted(Priority, key=lambda p: p.rank) == [Priority.HIGH, Priority.NORMAL,
                                                      Priority.LOW]


def test_priority_survives_the_outbox_round_trip_and_old_rows_are_normal() -> None:
    n = Notification(event_id="e", rule="r", sink="s", source="src", job_id="j",
                     payload={"text": "x"}, on=EventKind.TRANSITION, priority=Priority.HIGH)
    assert Notification.from_dict(n.as_dict()) == n
    old = {k: v for k, v in n.as_dict().items() if k != "priority"}
    assert Notification.from_dict(old).priority is Priority.NORMAL


RULES = """
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.com"

[[sinks]]
name = "pager"
kind = "webhook"
url = "https://x"

[[rules]]
name = "r"
on = "progress"
template = "t.j2"
notify = ["pager"]
priority = "{priority}"
"""


def test_a_rule_may_set_its_priority() -> None:
    config = parse_config(RULES.format(priority="high"), "rules.toml", {})
    assert config.rules[0].priority is Priority.HIGH


def test_an_unknown_priority_is_a_config_error_with_its_line() -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(RULES.format(priority="urgent"), "rules.toml", {})
    (message,) = [e.render() for e in caught.value.errors]
    assert message.startswith("rules.toml:17: rules[0].priority:")
    assert "high" in message and "low" in message
