"""Detection rules (contract section 4), table-driven with an injected clock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from bridge.deadlines import FinishTimes
from bridge.detect import Detection, DetectSettings, detect, finished_ids
from bridge.model import EventKind, JobState, JobStatus, PollResult, TrackedJob
from bridge.source_health import source_failed, source_succeeded

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SETTINGS = DetectSettings(
    stall_after=timedelta(minutes=15),
    progress_step=25.0,
    vanish_after=timedelta(0),
    retain=timedelta(hours=1),
)
P, R, B, S, F, C, U = (
    JobState.PENDING,
    JobState.RUNNING,
    JobState.BLOCKED,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.UNKNOWN,
)
A, T, PR, ST, V = (
    EventKind.APPEARED,
    EventKind.TRANSITION,
    EventKind.PROGRESS,
    EventKind.STALLED,
    EventKind.VANISHED,
)


def job(
    state: JobState = R,
    progress: float | None = None,
    *,
    id: str = "j1",
    raw: str | None = None,
    message: str | None = None,
    fields: dict[str, object] | None = None,
) -> JobStatus:
    return JobStatus(
        id=id,
        state=state,
        raw_state=raw if raw is not None else str(state),
        progress=progress,
        message=message,
        fields=fields or {},
    )


def poll(
    *observations: JobStatus, complete: bool = False, missing: Sequence[str] = ()
) -> PollResult:
    return PollResult(observations=observations, complete=complete, missing=frozenset(missing))


@dataclass
class Tracker:
    """Applies detections the way the pipeline does, with a clock the test moves.

    Every test runs twice (the `expiry` fixture): once finding expired jobs by walking the
    unobserved ones, once from `FinishTimes` as the pipeline does; both must agree."""

    settings: DetectSettings = SETTINGS
    known: dict[str, TrackedJob] = field(default_factory=dict)
    now: datetime = T0
    history: list[Detection] = field(default_factory=list)
    finish_times: FinishTimes = field(default_factory=FinishTimes)
    use_finish_times: ClassVar[bool] = False

    def feed(self, result: PollResult, *, at: timedelta | None = None) -> Detection:
        if at is not None:
            self.now = T0 + at
        expiring = None
        if self.use_finish_times:
            expiring = self.finish_times.due(self.now - self.settings.retain, self.known)
        detection = detect(
            source="src", known=self.known, poll=result, now=self.now, settings=self.settings,
            expiring=expiring,
        )
        for tracked in detection.upserts:
            self.known[tracked.id] = tracked
        for job_id in detection.removals:
            del self.known[job_id]
        self.finish_times.add(detection.upserts)
        self.finish_times.compact(self.known)
        self.history.append(detection)
        return detection


@pytest.fixture(autouse=True, params=["walk", "finish_times"])
def expiry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Tracker, "use_finish_times", request.param == "finish_times")


def kinds(detection: Detection) -> list[EventKind]:
    return [event.on for event in detection.events]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# --- appeared ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [P, R, B, S, F, C, U])
def test_first_observation_emits_only_appeared(state: JobState) -> None:
    detection = Tracker().feed(poll(job(state, 60)))
    assert kinds(detection) == [A]
    event = detection.events[0]
    assert event.from_state is None and event.to_state is None and event.previous is None
    assert event.job is not None and event.job.state is state
    assert [t.id for t in detection.upserts] == ["j1"]


def test_appeared_event_carries_first_seen_and_zero_duration_when_running() -> None:
    event = Tracker().feed(poll(job(R)), at=minutes(3)).events[0]
    assert event.first_seen == T0 + minutes(3)
    assert event.at == T0 + minutes(3)
    assert event.duration == timedelta(0)


# --- transitions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [(P, R), (R, S), (R, F), (R, C), (P, C), (R, B), (B, R), (U, R), (S, F)],
)
def test_state_change_emits_one_transition(before: JobState, after: JobState) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(before)))
    detection = tracker.feed(poll(job(after)), at=minutes(1))
    assert kinds(detection) == [T]
    event = detection.events[0]
    assert (event.from_state, event.to_state) == (before, after)
    assert event.previous is not None and event.previous.state is before
    assert event.job is not None and event.job.state is after


def test_raw_state_change_within_one_canonical_state_updates_record_without_event() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, raw="2")))
    detection = tracker.feed(poll(job(R, raw="5")), at=minutes(1))
    assert detection.events == ()
    assert [t.status.raw_state for t in detection.upserts] == ["5"]


def test_transition_duration_counts_from_first_seen_running() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(P)))
    tracker.feed(poll(job(R)), at=minutes(2))
    tracker.feed(poll(job(R, 10)), at=minutes(5))
    event = tracker.feed(poll(job(F)), at=minutes(9)).events[0]
    assert event.duration == minutes(7)
    assert event.first_seen == T0


def test_duration_is_none_when_job_never_seen_running() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(P)))
    event = tracker.feed(poll(job(C)), at=minutes(1)).events[0]
    assert event.duration is None


@pytest.mark.parametrize("restart", [R, P])
def test_terminal_job_running_again_is_a_new_run(restart: JobState) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    tracker.feed(poll(job(S, 100)), at=minutes(5))
    detection = tracker.feed(poll(job(restart, 0)), at=minutes(10))
    assert kinds(detection) == [T]
    event = detection.events[0]
    assert (event.from_state, event.to_state) == (S, restart)
    assert event.job is not None and event.job.run == 2
    assert tracker.known["j1"].finished_at is None
    expected = timedelta(0) if restart is R else None
    assert event.duration == expected


def test_second_run_keeps_its_run_number_and_measures_its_own_duration() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(S)))
    tracker.feed(poll(job(R)), at=minutes(1))
    event = tracker.feed(poll(job(F)), at=minutes(4)).events[0]
    assert event.job is not None and event.job.run == 2
    assert event.duration == minutes(3)


# --- progress ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "step", "events"),
    [
        (0, 30, 25.0, 1),  # crosses 25
        (30, 45, 25.0, 0),  # stays between 25 and 50
        (45, 80, 25.0, 1),  # crosses 50 and 75: still one event
        (None, 30, 25.0, 1),  # no progress yet counts as 0
        (80, 100, 25.0, 1),  # reaching 100 crosses the last boundary
        (60, 40, 25.0, 0),  # going back is not progress
        (10, None, 25.0, 0),  # progress disappearing is not progress
        (24.9, 25.0, 25.0, 1),  # exactly on the boundary counts
        (5, 12, 10.0, 1),  # custom step
        (12, 19, 10.0, 0),
    ],
)
def test_progress_event_fires_when_a_step_boundary_is_crossed(
    before: float | None, after: float | None, step: float, events: int
) -> None:
    tracker = Tracker(settings=DetectSettings(progress_step=step))
    tracker.feed(poll(job(R, before)))
    detection = tracker.feed(poll(job(R, after)), at=minutes(1))
    assert kinds(detection) == [PR] * events
    assert len(detection.upserts) == 1


def test_progress_event_carries_previous_progress() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10)))
    event = tracker.feed(poll(job(R, 55)), at=minutes(1)).events[0]
    assert event.previous is not None and event.previous.progress == 10
    assert event.job is not None and event.job.progress == 55


def test_state_change_with_progress_crossing_emits_transition_then_progress() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(P, 0)))
    assert kinds(tracker.feed(poll(job(R, 30)), at=minutes(1))) == [T, PR]


def test_reaching_a_terminal_state_emits_no_progress_event() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 40)))
    assert kinds(tracker.feed(poll(job(S, 100)), at=minutes(1))) == [T]


# --- stalled ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "expected"),
    [(minutes(14), []), (minutes(15), [ST]), (minutes(40), [ST])],
)
def test_running_job_without_progress_for_stall_after_is_stalled(
    idle: timedelta, expected: list[EventKind]
) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10)))
    assert kinds(tracker.feed(poll(job(R, 10)), at=idle)) == expected


def test_stalled_fires_once_until_progress_moves() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10)))
    assert kinds(tracker.feed(poll(job(R, 10)), at=minutes(16))) == [ST]
    assert kinds(tracker.feed(poll(job(R, 10)), at=minutes(30))) == []
    assert kinds(tracker.feed(poll(job(R, 11)), at=minutes(31))) == []
    assert not tracker.known["j1"].stalled
    assert kinds(tracker.feed(poll(job(R, 11)), at=minutes(46))) == [ST]
    first, second = (d.events[0] for d in tracker.history if d.events and d.events[0].on is ST)
    assert first.id != second.id


def test_stalled_event_says_why() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10)))
    event = tracker.feed(poll(job(R, 10)), at=minutes(20)).events[0]
    assert event.reason == "no progress for 20m 00s (stall_after is 15m 00s)"
    assert event.duration == minutes(20)


@pytest.mark.parametrize("state", [P, B, U])
def test_only_running_jobs_stall(state: JobState) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(state)))
    assert kinds(tracker.feed(poll(job(state)), at=minutes(60))) == []


def test_stall_clock_starts_when_the_job_starts_running() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(P)))
    tracker.feed(poll(job(R)), at=minutes(14))
    assert kinds(tracker.feed(poll(job(R)), at=minutes(20))) == []
    assert kinds(tracker.feed(poll(job(R)), at=minutes(29))) == [ST]


def test_message_change_on_an_idle_running_job_still_stalls() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10, message="a")))
    assert kinds(tracker.feed(poll(job(R, 10, message="b")), at=minutes(20))) == [ST]
    assert tracker.known["j1"].stalled


# --- vanished ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second_poll", "reason"),
    [
        (poll(complete=True), "list"),
        (poll(missing=["j1"]), "not found"),
    ],
)
def test_missing_unfinished_job_vanishes_once(second_poll: PollResult, reason: str) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 50)))
    detection = tracker.feed(second_poll, at=minutes(1))
    assert kinds(detection) == [V]
    event = detection.events[0]
    assert event.reason is not None and reason in event.reason
    assert event.job is not None and event.job.progress == 50
    assert tracker.known["j1"].vanished and tracker.known["j1"].done
    assert kinds(tracker.feed(second_poll, at=minutes(2))) == []


def test_job_absent_from_an_incomplete_poll_is_not_missing() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    detection = tracker.feed(poll(job(R, id="other")), at=minutes(1))
    assert kinds(detection) == [A]
    assert not tracker.known["j1"].vanished


@pytest.mark.parametrize("state", [S, F, C])
def test_missing_terminal_job_does_not_vanish(state: JobState) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    tracker.feed(poll(job(state)), at=minutes(1))
    detection = tracker.feed(poll(complete=True, missing=["j1"]), at=minutes(2))
    assert detection.events == () and detection.upserts == ()


@pytest.mark.parametrize(
    ("absent_for", "expected"),
    [(minutes(1), []), (minutes(2), [V]), (minutes(10), [V])],
)
def test_missing_job_vanishes_after_the_grace_period(
    absent_for: timedelta, expected: list[EventKind]
) -> None:
    tracker = Tracker(settings=DetectSettings(vanish_after=minutes(2)))
    tracker.feed(poll(job(R)))
    first = tracker.feed(poll(complete=True), at=minutes(1))
    assert kinds(first) == []
    assert tracker.known["j1"].missing_since == T0 + minutes(1)
    assert kinds(tracker.feed(poll(complete=True), at=minutes(1) + absent_for)) == expected


def test_missing_job_reappearing_within_grace_is_not_vanished() -> None:
    tracker = Tracker(settings=DetectSettings(vanish_after=minutes(2)))
    tracker.feed(poll(job(R)))
    tracker.feed(poll(complete=True), at=minutes(1))
    back = tracker.feed(poll(job(R), complete=True), at=minutes(2))
    assert kinds(back) == []
    assert tracker.known["j1"].missing_since is None
    # The grace period starts over when it goes missing again.
    assert kinds(tracker.feed(poll(complete=True), at=minutes(3))) == []
    assert kinds(tracker.feed(poll(complete=True), at=minutes(4))) == []
    assert kinds(tracker.feed(poll(complete=True), at=minutes(5))) == [V]


def test_repeated_missing_polls_within_grace_write_nothing_new() -> None:
    tracker = Tracker(settings=DetectSettings(vanish_after=minutes(10)))
    tracker.feed(poll(job(R)))
    assert len(tracker.feed(poll(missing=["j1"]), at=minutes(1)).upserts) == 1
    assert tracker.feed(poll(missing=["j1"]), at=minutes(2)).upserts == ()


def test_watched_id_never_found_vanishes_after_grace() -> None:
    tracker = Tracker(settings=DetectSettings(vanish_after=minutes(2)))
    first = tracker.feed(poll(missing=["w1"]))
    assert kinds(first) == []
    assert tracker.feed(poll(missing=["w1"]), at=minutes(1)).upserts == ()
    detection = tracker.feed(poll(missing=["w1"]), at=minutes(2))
    assert kinds(detection) == [V]
    assert detection.events[0].job is not None and detection.events[0].job.id == "w1"


def test_watched_id_found_after_being_missing_emits_appeared_not_transition() -> None:
    tracker = Tracker(settings=DetectSettings(vanish_after=minutes(2)))
    tracker.feed(poll(missing=["w1"]))
    detection = tracker.feed(poll(job(R, id="w1")), at=minutes(1))
    assert kinds(detection) == [A]
    assert tracker.known["w1"].seen


def test_vanished_job_that_returns_in_a_new_state_emits_a_transition() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    tracker.feed(poll(complete=True), at=minutes(1))
    detection = tracker.feed(poll(job(S)), at=minutes(2))
    assert kinds(detection) == [T]
    assert not tracker.known["j1"].vanished


# --- retention ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "removed"),
    [(minutes(59), ()), (minutes(60), ("j1",)), (minutes(600), ("j1",))],
)
def test_finished_job_is_forgotten_after_retain(after: timedelta, removed: tuple[str, ...]) -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    tracker.feed(poll(job(F)), at=minutes(1))
    assert tracker.feed(poll(), at=minutes(1) + after).removals == removed


def test_vanished_job_is_forgotten_after_retain() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    tracker.feed(poll(complete=True), at=minutes(1))
    assert tracker.feed(poll(complete=True), at=minutes(61)).removals == ("j1",)


def test_finished_job_still_listed_is_never_forgotten() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(S), complete=True))
    detection = tracker.feed(poll(job(S), complete=True), at=minutes(600))
    assert detection.removals == () and detection.events == ()


def test_running_job_is_never_forgotten() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(P)))
    assert tracker.feed(poll(), at=minutes(6000)).removals == ()


# --- writes and ids ------------------------------------------------------------------------------


def test_unchanged_poll_writes_nothing() -> None:
    tracker = Tracker()
    jobs = [job(R, 10, id=f"j{n}") for n in range(200)]
    tracker.feed(poll(*jobs, complete=True))
    detection = tracker.feed(poll(*jobs, complete=True), at=minutes(1))
    assert detection == Detection()


def test_change_in_raw_fields_alone_is_not_a_write() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10, fields={"updated_at": "1"})))
    detection = tracker.feed(poll(job(R, 10, fields={"updated_at": "2"})), at=minutes(1))
    assert detection.upserts == ()


def test_only_changed_jobs_are_upserted() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10, id="a"), job(R, 10, id="b"), job(R, 10, id="c")))
    detection = tracker.feed(
        poll(job(R, 10, id="a"), job(R, 20, id="b"), job(R, 10, id="c")), at=minutes(1)
    )
    assert [t.id for t in detection.upserts] == ["b"]


def test_replaying_an_observation_gives_the_same_event_ids() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10)))
    known = dict(tracker.known)
    once = detect(
        source="src", known=known, poll=poll(job(F, 30)), now=T0 + minutes(1), settings=SETTINGS
    )
    replay = detect(
        source="src", known=known, poll=poll(job(F, 30)), now=T0 + minutes(7), settings=SETTINGS
    )
    assert [e.id for e in once.events] == [e.id for e in replay.events]


def test_repeated_transitions_between_the_same_states_get_distinct_ids() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R)))
    states = [B, R, B, R]
    ids = [tracker.feed(poll(job(s)), at=minutes(n + 1)).events[0].id for n, s in enumerate(states)]
    assert len(set(ids)) == 4


def test_same_job_id_in_two_sources_gets_distinct_event_ids() -> None:
    one = detect(source="a", known={}, poll=poll(job(R)), now=T0, settings=SETTINGS)
    two = detect(source="b", known={}, poll=poll(job(R)), now=T0, settings=SETTINGS)
    assert one.events[0].id != two.events[0].id


def test_finished_ids_names_watched_jobs_that_are_done() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, id="a"), job(S, id="b"), job(R, id="c")))
    tracker.feed(poll(missing=["c"]), at=minutes(1))
    assert finished_ids(["a", "b", "c", "unknown"], tracker.known) == ["b", "c"]


def test_settings_come_from_the_source_config() -> None:
    from bridge.config.schema import EsalesSource

    source = EsalesSource.model_validate(
        {"name": "e", "kind": "esales", "api_key": "k", "stall_after": "5m", "progress_step": 10,
         "base_url": "https://c1.api.esales.apptus.cloud"}
    )
    settings = DetectSettings.from_source(source)
    assert settings.stall_after == minutes(5)
    assert settings.progress_step == 10
    assert settings.vanish_after == minutes(2)


# --- source health ------------------------------------------------------------------------------


def test_first_failed_poll_emits_source_down_with_reason() -> None:
    up, _ = source_succeeded(source="src", health=None, now=T0, latency=0.1)
    health, events = source_failed(source="src", health=up, reason="HTTP 503", now=T0 + minutes(1))
    assert [e.on for e in events] == [EventKind.SOURCE_DOWN]
    assert events[0].reason == "HTTP 503"
    assert not health.up and health.failures == 1 and health.since == T0 + minutes(1)


def test_failed_poll_of_a_never_polled_source_emits_source_down() -> None:
    _, events = source_failed(source="src", health=None, reason="timeout", now=T0)
    assert [e.on for e in events] == [EventKind.SOURCE_DOWN]


def test_further_failures_emit_nothing_but_count() -> None:
    down, _ = source_failed(source="src", health=None, reason="a", now=T0)
    health, events = source_failed(source="src", health=down, reason="b", now=T0 + minutes(1))
    assert events == ()
    assert health.failures == 2 and health.reason == "b" and health.since == T0


def test_success_after_failure_emits_source_up_once() -> None:
    down, _ = source_failed(source="src", health=None, reason="HTTP 500", now=T0)
    up, events = source_succeeded(source="src", health=down, now=T0 + minutes(3), latency=0.2)
    assert [e.on for e in events] == [EventKind.SOURCE_UP]
    assert events[0].duration == minutes(3)
    assert up.up and up.failures == 0 and up.reason is None
    again, more = source_succeeded(source="src", health=up, now=T0 + minutes(4), latency=0.3)
    assert more == () and again.last_latency == 0.3 and again.since == T0 + minutes(3)


def test_first_success_emits_nothing() -> None:
    health, events = source_succeeded(source="src", health=None, now=T0, latency=0.1)
    assert events == () and health.up


def test_source_down_and_up_ids_are_stable_and_distinct() -> None:
    up, _ = source_succeeded(source="src", health=None, now=T0, latency=None)
    down_a = source_failed(source="src", health=up, reason="x", now=T0 + minutes(1))
    down_b = source_failed(source="src", health=up, reason="x", now=T0 + minutes(2))
    assert down_a[1][0].id == down_b[1][0].id
    back = source_succeeded(source="src", health=down_a[0], now=T0 + minutes(3), latency=None)
    assert back[1][0].id != down_a[1][0].id


def test_detect_module_is_pure() -> None:
    code = (
        "import sys, bridge.detect\n"
        "bad = [m for m in ('aiohttp', 'apscheduler', 'jinja2', 'sqlite3', 'psycopg')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_id_listed_twice_in_one_poll_counts_its_last_observation() -> None:
    tracker = Tracker()
    tracker.feed(poll(job(R, 10)))
    detection = tracker.feed(poll(job(R, 10), job(F, 10, message="boom"), complete=True),
                             at=minutes(1))
    assert kinds(detection) == [T]
    assert detection.events[0].to_state is F
    assert tracker.known["j1"].status.message == "boom"
