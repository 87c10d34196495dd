"""Detection benchmark: one pass over 100,000 tracked jobs, and memory per tracked job.

Aims: under 100 ms per pass with 1% of the jobs changed, under 1 KB per tracked job.
Run: `.venv/bin/python -m bench.detect`.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.detect import DetectSettings, detect
from bridge.model import JobState, JobStatus, PollResult, TrackedJob
from bridge.store.sql import dumps, jobs_from

JOBS = 100_000
CHANGED = 0.01
PASSES = 7
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _response(progress: list[int]) -> list[dict[str, Any]]:
    """Zendesk-like job statuses as a poller gets them: one `json.loads` per response (so the
    decoder shares dict keys between items, as it does for a real list body)."""
    items = [
        {
            "id": f"{n:032x}",
            "url": f"https://acme.zendesk.com/api/v2/job_statuses/{n:032x}.json",
            "status": "working",
            "total": 100,
            "progress": p,
            "message": None,
        }
        for n, p in enumerate(progress)
    ]
    parsed: list[dict[str, Any]] = json.loads(json.dumps(items))
    return parsed


def _status(item: dict[str, Any]) -> JobStatus:
    return JobStatus(
        id=item["id"],
        state=JobState.RUNNING,
        raw_state=item["status"],
        progress=float(item["progress"]),
        url=item["url"],
        fields=item,
    )


def _observations(progress: list[int]) -> list[JobStatus]:
    return [_status(item) for item in _response(progress)]


def _seed_jobs(observations: list[JobStatus]) -> dict[str, TrackedJob]:
    first = detect(
        source="bench",
        known={},
        poll=PollResult(observations=observations, complete=True),
        now=START,
        settings=DetectSettings(),
    )
    return {job.id: job for job in first.upserts}


def bench_pass() -> tuple[float, int, int]:
    """Median ms of one pass; also the upserts and events of the last pass."""
    base = [10] * JOBS
    known = _seed_jobs(_observations(base))
    step = int(1 / CHANGED)
    changed = [p + 30 if n % step == 0 else p for n, p in enumerate(base)]
    observations = _observations(changed)
    poll = PollResult(observations=observations, complete=True)
    settings = DetectSettings()
    timings = []
    result = None
    for i in range(PASSES):
        now = START + timedelta(seconds=30 * (i + 1))
        gc.collect()
        started = time.perf_counter()
        result = detect(source="bench", known=known, poll=poll, now=now, settings=settings)
        timings.append((time.perf_counter() - started) * 1000)
    assert result is not None
    return statistics.median(timings), len(result.upserts), len(result.events)


def bench_memory() -> tuple[float, float]:
    """Bytes per tracked job: as detection builds them, and as loaded from the store."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    jobs = _seed_jobs(_observations([10] * JOBS))
    live = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rows = [dumps(job.as_dict()) for job in jobs.values()]
    del jobs
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    loaded = {job.id: job for job in jobs_from(rows)}
    reloaded = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(loaded) == JOBS
    return live / JOBS, reloaded / JOBS


def _reference_ms() -> float:
    """This machine's speed, to read the figures against: `sum(range(10**6))`, best of 5."""
    best = []
    for _ in range(5):
        started = time.perf_counter()
        sum(range(10**6))
        best.append((time.perf_counter() - started) * 1000)
    return min(best)


def main() -> None:
    print(
        f"   machine: sum(range(10**6)) takes {_reference_ms():.1f} ms here (CPython speed gauge)"
    )
    ms, upserts, events = bench_pass()
    print(
        f"   detect: {ms:.1f} ms per pass over {JOBS:,} tracked jobs, {CHANGED:.0%} changed "
        f"(median of {PASSES}; {upserts} upserts, {events} events; aim < 100 ms)"
    )
    fresh, loaded = bench_memory()
    print(
        f"   memory: {fresh:.0f} B per tracked job as detected, {loaded:.0f} B as loaded "
        f"from the store (tracemalloc, {JOBS:,} jobs with Zendesk-like fields; aim < 1 KB)"
    )


if __name__ == "__main__":
    main()
