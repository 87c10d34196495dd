"""The rules engine: filters, first match vs continue, throttle, repeat and `when` errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.config.schema import Rule
from bridge.errors import TemplateError
from bridge.model import Event, EventKind, JobState, JobStatus, TrackedJob
from bridge.render import compile_when
from bridge.rules import Filter, Outcome, RuleBook, mark_for
from bridge.store.base import RuleMark

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make_rule(name: str = "r", **fields: Any) -> Rule:
    data = {"name": name, "on": "transition", "template": "t.j2", "notify": ["s"], **fields}
    return Rule.model_validate(data)


def job(state: str = "failed", *, job_id: str = "j1", progress: float | None = 40.0) -> JobStatus:
    return JobStatus(id=job_id, state=JobState(state), raw_state=state, progress=progress)


def transition(before: str = "running", after: str = "failed", *, source: str = "zendesk",
               job_id: str = "j1", progress: float | None = 40.0) -> Event:
    return Event(id="e", on=EventKind.TRANSITION, source=source, at=T0,
                 job=job(after, job_id=job_id, progress=progress),
                 previous=job(before, job_id=job_id), from_state=JobState(before),
                 to_state=JobState(after))


def event(kind: EventKind, state: str | None = "running", *, previous: str | None = None,
          source: str = "zendesk") -> Event:
    return Event(id="e", on=kind, source=source, at=T0,
                 job=job(state) if state else None,
                 previous=job(previous) if previous else None)


def evaluate(rules: list[Rule], ev: Event, marks: Mapping[Any, RuleMark] | None = None,
             now: datetime = T0) -> list[tuple[str, Outcome]]:
    book = RuleBook(rules, compile_when)
    return [(d.rule.name, d.outcome) for d in book.evaluate(ev, marks or {}, now)]


def tracked(state: str = "failed", *, stalled: bool = False, vanished: bool = False,
            source: str = "zendesk") -> TrackedJob:
    return TrackedJob(source=source, status=job(state), first_seen=T0, last_seen=T0,
                      moved_at=T0, stalled=stalled, vanished=vanished)


def mark(rule: str = "r", *, at: datetime = T0, state: str | None = "failed",
         job_id: str = "j1", source: str = "zendesk") -> dict[tuple[str, str, str], RuleMark]:
    return {(rule, source, job_id): RuleMark(rule=rule, source=source, job_id=job_id,
                                             notified_at=at, state=state)}


FILTER_CASES = [
    # (rule fields, event, outcome, failing filter)
    ({}, transition(), Outcome.MATCHED, None),
    ({"source": "zen*"}, transition(), Outcome.MATCHED, None),
    ({"source": "jtl*"}, transition(), Outcome.FILTERED, Filter.SOURCE),
    ({"source": "Zendesk"}, transition(), Outcome.FILTERED, Filter.SOURCE),
    ({"from": ["pending", "running"]}, transition("running"), Outcome.MATCHED, None),
    ({"from": "pending"}, transition("running"), Outcome.FILTERED, Filter.FROM),
    ({"to": ["failed", "cancelled"]}, transition(after="cancelled"), Outcome.MATCHED, None),
    ({"to": "failed"}, transition(after="succeeded"), Outcome.FILTERED, Filter.TO),
    # Non-transition events: `to` is the job's current state, `from` the previous one.
    ({"on": "stalled", "to": "running"}, event(EventKind.STALLED), Outcome.MATCHED, None),
    ({"on": "stalled", "to": "blocked"}, event(EventKind.STALLED), Outcome.FILTERED, Filter.TO),
    ({"on": "progress", "from": "running"}, event(EventKind.PROGRESS, previous="running"),
     Outcome.MATCHED, None),
    ({"on": "appeared", "from": "pending"}, event(EventKind.APPEARED, "pending"),
     Outcome.FILTERED, Filter.FROM),
    ({"on": "source_down", "to": "failed"}, event(EventKind.SOURCE_DOWN, None),
     Outcome.FILTERED, Filter.TO),
    ({"on": "source_down"}, event(EventKind.SOURCE_DOWN, None), Outcome.MATCHED, None),
    ({"when": "job.progress < 100"}, transition(), Outcome.MATCHED, None),
    ({"when": "job.progress >= 100"}, transition(), Outcome.FILTERED, Filter.WHEN),
    ({"when": "from == 'running' and to == 'failed' and source == 'zendesk'"}, transition(),
     Outcome.MATCHED, None),
    ({"when": "rule == 'r' and on == 'transition'"}, transition(), Outcome.MATCHED, None),
]


@pytest.mark.parametrize(("fields", "ev", "outcome", "failed_filter"), FILTER_CASES)
def test_each_filter_decides_with_a_named_outcome(
    fields: dict[str, Any], ev: Event, outcome: Outcome, failed_filter: Filter | None
) -> None:
    book = RuleBook([make_rule(**fields)], compile_when)
    [decision] = book.evaluate(ev, {}, T0)
    assert (decision.outcome, decision.filter) == (outcome, failed_filter)


def test_rules_for_other_event_kinds_are_not_tried() -> None:
    rules = [make_rule("progress", on="progress"), make_rule("transition")]
    assert evaluate(rules, transition()) == [("transition", Outcome.MATCHED)]


def test_filtered_decision_says_why() -> None:
    book = RuleBook([make_rule(to=["failed", "cancelled"])], compile_when)
    [decision] = book.evaluate(transition(after="succeeded"), {}, T0)
    assert decision.describe() == "rule r: FILTERED by to: succeeded not in [failed, cancelled]"


def test_first_match_wins_and_later_rules_are_not_tried() -> None:
    rules = [make_rule("first"), make_rule("second")]
    assert evaluate(rules, transition()) == [("first", Outcome.MATCHED)]


def test_continue_lets_later_rules_match_too() -> None:
    rules = [make_rule("first", **{"continue": True}), make_rule("second"), make_rule("third")]
    assert evaluate(rules, transition()) == [
        ("first", Outcome.MATCHED), ("second", Outcome.MATCHED)]


def test_a_filtered_rule_does_not_stop_later_rules() -> None:
    rules = [make_rule("succeeded", to="succeeded"), make_rule("failed", to="failed")]
    assert evaluate(rules, transition()) == [
        ("succeeded", Outcome.FILTERED), ("failed", Outcome.MATCHED)]


@pytest.mark.parametrize(
    ("elapsed", "outcome"),
    [
        (timedelta(0), Outcome.THROTTLED),
        (timedelta(minutes=9, seconds=59), Outcome.THROTTLED),
        (timedelta(minutes=10), Outcome.MATCHED),
        (timedelta(hours=3), Outcome.MATCHED),
    ],
)
def test_throttle_allows_one_notification_per_window(elapsed: timedelta, outcome: Outcome) -> None:
    rules = [make_rule(throttle="10m")]
    assert evaluate(rules, transition(), mark(), now=T0 + elapsed) == [("r", outcome)]


def test_throttle_is_per_job() -> None:
    rules = [make_rule(throttle="10m")]
    assert evaluate(rules, transition(job_id="other"), mark(), now=T0) == [("r", Outcome.MATCHED)]


def test_throttle_is_per_rule() -> None:
    rules = [make_rule("a", throttle="10m", **{"continue": True}), make_rule("b", throttle="10m")]
    assert evaluate(rules, transition(), mark("a")) == [
        ("a", Outcome.THROTTLED), ("b", Outcome.MATCHED)]


def test_a_throttled_match_still_stops_later_rules() -> None:
    rules = [make_rule("failed", to="failed", throttle="1h"), make_rule("catch-all")]
    assert evaluate(rules, transition(), mark("failed")) == [("failed", Outcome.THROTTLED)]


def test_source_events_are_throttled_per_rule_and_source() -> None:
    rules = [make_rule(on="source_down", throttle="1h")]
    marks = mark(job_id="", state=None)
    down = event(EventKind.SOURCE_DOWN, None)
    assert evaluate(rules, down, marks) == [("r", Outcome.THROTTLED)]
    assert evaluate(rules, event(EventKind.SOURCE_DOWN, None, source="jtl"), marks) == [
        ("r", Outcome.MATCHED)]


def test_a_when_that_raises_skips_only_its_rule(caplog: pytest.LogCaptureFixture) -> None:
    rules = [make_rule("broken", when="job.progress < 100"), make_rule("next")]
    with caplog.at_level(logging.ERROR, logger="bridge.rules"):
        decisions = evaluate(rules, transition(progress=None))
    assert decisions == [("broken", Outcome.WHEN_FAILED), ("next", Outcome.MATCHED)]
    assert "rule broken: `when` failed" in caplog.text


def test_a_when_naming_an_unknown_variable_fails_instead_of_being_false() -> None:
    rules = [make_rule(when="jobb.progress")]
    assert evaluate(rules, transition()) == [("r", Outcome.WHEN_FAILED)]


def test_a_when_that_does_not_compile_is_an_error_naming_the_rule() -> None:
    with pytest.raises(TemplateError, match=r"rule 'bad'.*does not compile"):
        RuleBook([make_rule("bad", when="job.progress <")], compile_when)


def test_each_when_is_compiled_once() -> None:
    compiled: list[str] = []

    def counting(expression: str) -> Any:
        compiled.append(expression)
        return lambda context: True

    book = RuleBook([make_rule(when="x"), make_rule("b", when="y")], counting)
    for _ in range(3):
        book.evaluate(transition(), {}, T0)
    assert compiled == ["x", "y"]


# --- rule memory ----------------------------------------------------------------------------


def test_mark_for_a_throttled_rule_remembers_job_and_state() -> None:
    book = RuleBook([make_rule(throttle="10m")], compile_when)
    [decision] = book.evaluate(transition(), {}, T0)
    assert mark_for(decision, transition(), T0) == RuleMark(
        rule="r", source="zendesk", job_id="j1", notified_at=T0, state="failed")


def test_no_mark_for_a_rule_without_throttle_or_repeat() -> None:
    book = RuleBook([make_rule()], compile_when)
    [decision] = book.evaluate(transition(), {}, T0)
    assert mark_for(decision, transition(), T0) is None


def test_no_mark_for_a_throttled_decision() -> None:
    book = RuleBook([make_rule(throttle="10m")], compile_when)
    [decision] = book.evaluate(transition(), mark(), T0)
    assert mark_for(decision, transition(), T0) is None


def test_mark_for_a_source_event_has_an_empty_job_id() -> None:
    book = RuleBook([make_rule(on="source_down", throttle="1h")], compile_when)
    down = event(EventKind.SOURCE_DOWN, None)
    [decision] = book.evaluate(down, {}, T0)
    made = mark_for(decision, down, T0)
    assert made is not None
    assert (made.job_id, made.state) == ("", None)


# --- repeat -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "state", "due"),
    [
        (timedelta(minutes=59, seconds=59), "failed", False),
        (timedelta(hours=1), "failed", True),
        (timedelta(hours=5), "failed", True),
        (timedelta(hours=2), "running", False),
    ],
)
def test_repeat_is_due_while_the_job_stays_in_the_notified_state(
    elapsed: timedelta, state: str, due: bool
) -> None:
    book = RuleBook([make_rule(to="failed", repeat="1h")], compile_when)
    found = book.due_repeats([tracked(state)], mark(), T0 + elapsed)
    assert bool(found) is due


def test_repeat_needs_a_previous_notification() -> None:
    book = RuleBook([make_rule(to="failed", repeat="1h")], compile_when)
    assert book.due_repeats([tracked()], {}, T0 + timedelta(days=1)) == []


def test_rules_without_repeat_never_repeat() -> None:
    book = RuleBook([make_rule(to="failed", throttle="1h")], compile_when)
    assert book.due_repeats([tracked()], mark(), T0 + timedelta(days=1)) == []


def test_repeat_stops_once_the_job_vanished() -> None:
    book = RuleBook([make_rule(to="failed", repeat="1h")], compile_when)
    assert book.due_repeats([tracked(vanished=True)], mark(), T0 + timedelta(hours=2)) == []


def test_stalled_repeat_stops_when_the_job_moves_again() -> None:
    book = RuleBook([make_rule(on="stalled", repeat="30m")], compile_when)
    marks = mark(state="running")
    later = T0 + timedelta(hours=1)
    assert book.due_repeats([tracked("running", stalled=True)], marks, later) != []
    assert book.due_repeats([tracked("running", stalled=False)], marks, later) == []


def test_due_repeat_names_the_rule_and_the_job() -> None:
    rule = make_rule(to="failed", repeat="1h")
    job_ = tracked()
    book = RuleBook([rule], compile_when)
    assert book.due_repeats([job_], mark(), T0 + timedelta(hours=1)) == [(rule, job_)]


def test_a_repeat_reminder_is_evaluated_only_by_its_rule_and_ignores_from_and_throttle() -> None:
    rules = [
        make_rule("other"),
        make_rule("paging", **{"from": "running"}, to="failed", throttle="1d", repeat="1h"),
    ]
    reminder = Event(id="e", on=EventKind.TRANSITION, source="zendesk", at=T0, job=job(),
                     previous=job(), to_state=JobState.FAILED, repeat_of="paging")
    marks = mark("paging", at=T0 - timedelta(hours=1))
    assert evaluate(rules, reminder, marks) == [("paging", Outcome.MATCHED)]
