"""Source health with hysteresis (`down_after`), runs between polls (`run_key`), overdue
next runs (`due_at`) and lookups that failed this poll (`unknown`): pure tables."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from bridge.detect import DetectSettings, detect
from bridge.model import EventKind, JobState, JobStatus, PollResult, SourceHealth, TrackedJob
from bridge.source_health import source_failed, source_succeeded

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SETTINGS = DetectSettings(stall_after=timedelta(minutes=15))
S, F, R = JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING


def health_after(outcomes: str, down_after: int) -> tuple[SourceHealth | None, list[str]]:
    """Feed `x` (failed poll) and `o` (good poll) one minute apart; the events' kinds."""
    health: SourceHealth | None = None
    kinds: list[str] = []
    for minute, outcome in enumerate(outcomes):
        now = T0 + timedelta(minutes=minute)
        if outcome == "x":
            health, events = source_failed(source="s", health=health, reason="HTTP 500",
                                           now=now, down_after=down_after)
        else:
            health, events = source_succeeded(source="s", health=health, now=now, latency=0.1)
        kinds += [str(e.on) for e in events]
    return health, kinds


@pytest.mark.parametrize(("outcomes", "down_after", "kinds", "up"), [
    ("x", 1, ["source_down"], False),               # today's behaviour
    ("x", 3, [], True),
    ("xx", 3, [], True),
    ("xxx", 3, ["source_down"], False),
    ("xxxxx", 3, ["source_down"], False),           # once
    ("xxoxx", 3, [], True),                          # a good poll resets the count
    ("xxxo", 3, ["source_down", "source_up"], True),
    ("oxxxoxxx", 3, ["source_down", "source_up", "source_down"], False),
])
def test_down_after_consecutive_failed_polls(outcomes: str, down_after: int,
                                             kinds: list[str], up: bool) -> None:
    health, seen = health_after(outcomes, down_after)
    assert seen == kinds
    assert health is not None and health.up is up


def test_failures_below_the_threshold_are_counted_and_cleared() -> None:
    health, _ = health_after("xx", 3)
    assert health is not None and (health.failures, health.reason) == (2, "HTTP 500")
    health, _ = health_after("xxo", 3)
    assert health is not None and (health.failures, health.reason) == (0, None)


def jtl(state: JobState, last: str | None, *, due: datetime | None = None) -> JobStatus:
    return JobStatus(id="sync", state=state, raw_state=str(state), run_key=last, due_at=due)


def run_polls(*polls: JobStatus, step: timedelta = timedelta(minutes=1)
              ) -> list[tuple[str, str | None, str | None, int]]:
    """Detect over consecutive polls of one job; (kind, from, to, run) of every event."""
    known: dict[str, TrackedJob] = {}
    seen = []
    for n, obs in enumerate(polls):
        result = detect(source="jtl", known=known, poll=PollResult(observations=[obs]),
                        now=T0 + n * step, settings=SETTINGS)
        known.update({j.id: j for j in result.upserts})
        for e in result.events:
            assert e.job is not None
            seen.append((str(e.on), e.from_state and str(e.from_state),
                         e.to_state and str(e.to_state), e.job.run))
    return seen


def test_a_sync_that_failed_again_between_two_polls_is_a_second_failure() -> None:
    events = run_polls(jtl(R, "10:00"), jtl(F, "10:01"), jtl(F, "10:02"))
    assert events == [("appeared", None, None, 1),
                      ("transition", "running", "failed", 1),
                      ("transition", "failed", "failed", 2)]


def test_a_run_between_polls_that_succeeded_after_a_failure_counts_as_a_new_run() -> None:
    events = run_polls(jtl(F, "10:00"), jtl(S, "10:05"))
    assert events[1:] == [("transition", "failed", "succeeded", 2)]


def test_the_run_key_changing_as_a_seen_run_finishes_is_that_same_run() -> None:
    events = run_polls(jtl(S, "09:00"), jtl(R, "09:00"), jtl(S, "10:00"))
    assert events[1:] == [("transition", "succeeded", "running", 2),
                          ("transition", "running", "succeeded", 2)]


def test_an_unchanged_run_key_is_no_event() -> None:
    assert run_polls(jtl(F, "10:00"), jtl(F, "10:00"), jtl(F, "10:00"))[1:] == []


def test_an_overdue_next_run_is_stalled_once_with_a_reason() -> None:
    due = T0 + timedelta(minutes=5)
    known: dict[str, TrackedJob] = {}
    kinds: list[tuple[str, str | None]] = []
    for minute in (0, 10, 21, 30, 40):
        result = detect(source="jtl", known=known,
                        poll=PollResult(observations=[jtl(S, "09:00", due=due)]),
                        now=T0 + timedelta(minutes=minute), settings=SETTINGS)
        known.update({j.id: j for j in result.upserts})
        kinds += [(str(e.on), e.reason) for e in result.events]
    assert [k for k, _ in kinds] == ["appeared", "stalled"]
    reason = kinds[1][1]
    assert reason is not None and "did not start" in reason and due.isoformat() in reason


def test_a_running_job_is_not_overdue_and_a_new_due_time_rearms_the_check() -> None:
    due = T0
    moving = [JobStatus(id="sync", state=R, raw_state="2", progress=p, run_key="09:00",
                        due_at=due) for p in (10.0, 20.0)]
    events = run_polls(*moving, step=timedelta(minutes=20))
    assert [e[0] for e in events] == ["appeared"]
    later = T0 + timedelta(hours=1)
    events = run_polls(jtl(S, "09:00", due=due), jtl(S, "09:00", due=due),
                       jtl(S, "10:00", due=later), jtl(S, "10:00", due=later),
                       step=timedelta(minutes=20))
    # stalled (due at T0), then a new run; its next due time is not overdue yet.
    assert [e[0] for e in events] == ["appeared", "stalled", "transition"]


def test_a_failed_lookup_is_neither_missing_nor_changed() -> None:
    known: Mapping[str, TrackedJob] = {
        i: TrackedJob(source="z", status=JobStatus(id=i, state=R, raw_state="working"),
                      first_seen=T0, last_seen=T0, moved_at=T0)
        for i in ("listed", "looked-up")
    }
    listed = JobStatus(id="listed", state=R, raw_state="working")
    poll = PollResult(observations=[listed], complete=True, unknown=frozenset({"looked-up"}))
    result = detect(source="z", known=known, poll=poll, now=T0 + timedelta(minutes=1),
                    settings=SETTINGS)
    assert result.events == () and result.upserts == ()
    gone = PollResult(observations=[listed], complete=True)
    vanished = detect(source="z", known=known, poll=gone, now=T0 + timedelta(minutes=1),
                      settings=SETTINGS)
    assert [e.on for e in vanished.events] == [EventKind.VANISHED]
