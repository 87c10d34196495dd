"""FinishTimes: the done jobs due for forgetting, found without walking every tracked job."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.deadlines import FinishTimes
from bridge.model import JobState, JobStatus, TrackedJob

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def tracked(job_id: str, finished: int | None) -> TrackedJob:
    state = JobState.RUNNING if finished is None else JobState.SUCCEEDED
    return TrackedJob(
        source="src", status=JobStatus(id=job_id, state=state, raw_state=str(state)),
        first_seen=T0, last_seen=T0, moved_at=T0,
        finished_at=None if finished is None else T0 + timedelta(minutes=finished),
    )


def brute_force(jobs: dict[str, TrackedJob], cutoff: datetime) -> list[str]:
    return sorted(i for i, j in jobs.items()
                  if j.finished_at is not None and j.finished_at <= cutoff)


def test_due_agrees_with_walking_every_job_through_finishes_restarts_and_removals() -> None:
    rng = random.Random(13)
    jobs: dict[str, TrackedJob] = {}
    times = FinishTimes()
    for step in range(3000):
        job_id = f"j{rng.randrange(200)}"
        roll = rng.random()
        if roll < 0.15:
            jobs.pop(job_id, None)
        else:
            # Finishing again (a new finish time), running again (a stale entry), or new.
            finished = None if roll < 0.45 else step + rng.randrange(-50, 50)
            jobs[job_id] = tracked(job_id, finished)
            times.add([jobs[job_id]])
        times.compact(jobs)
        cutoff = T0 + timedelta(minutes=step + rng.randrange(-100, 100))
        assert times.due(cutoff, jobs) == brute_force(jobs, cutoff)
    # Stale entries do not pile up: the heap stays proportional to the jobs.
    assert len(times) <= 2 * len(jobs) + 64


def test_a_job_finished_again_later_is_due_only_by_its_new_time() -> None:
    times = FinishTimes()
    first = tracked("j1", 0)
    again = replace(first, finished_at=T0 + timedelta(minutes=30))
    times.add([first, again])
    jobs = {"j1": again}
    assert times.due(T0 + timedelta(minutes=10), jobs) == []
    assert times.due(T0 + timedelta(minutes=30), jobs) == ["j1"]


def test_reset_reads_the_finished_jobs_of_loaded_records() -> None:
    jobs = {"a": tracked("a", 5), "b": tracked("b", None), "c": tracked("c", 50)}
    times = FinishTimes()
    times.reset(jobs)
    assert len(times) == 2
    assert times.due(T0 + timedelta(minutes=10), jobs) == ["a"]
