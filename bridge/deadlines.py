"""When finished jobs may be forgotten: a heap of finish times, so a push costs its own jobs.

Detection forgets a done job once it finished `retain` ago and the poll did not observe it.
A complete list poll sees every tracked job anyway and finds them as it goes; a push (or a
by-id poll) observes a handful, and walking all tracked jobs to find the expired ones made
every push cost as much as the whole source (`bridge.detect._expired`, a third of a push's
time with 20,000 tracked jobs). `FinishTimes` keeps (finished_at, job id) in a heap: the
ids due by a cutoff are found by visiting only the entries at or before it.

Entries are never updated in place: a job that finishes again pushes a new entry, and one
that is forgotten or starts a new run leaves a stale entry behind. `due` checks every entry
it returns against the job records, and `compact` drops stale entries from the top and
rebuilds the heap when they outnumber the live ones, so it stays proportional to the jobs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime

from bridge.model import TrackedJob


class FinishTimes:
    """Finish times of one source's done jobs, earliest first."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, jobs: Iterable[TrackedJob]) -> None:
        """Note the jobs that are finished (others are ignored)."""
        heap = self._heap
        for job in jobs:
            if job.finished_at is not None:
                heapq.heappush(heap, (job.finished_at, job.id))

    def reset(self, jobs: Mapping[str, TrackedJob]) -> None:
        """Rebuild from the job records (after loading them)."""
        self._heap = [(j.finished_at, j.id) for j in jobs.values() if j.finished_at is not None]
        heapq.heapify(self._heap)

    def due(self, cutoff: datetime, jobs: Mapping[str, TrackedJob]) -> list[str]:
        """Ids of jobs that finished at or before `cutoff` and still are, as `jobs` records
        them. Visits only the heap entries at or before the cutoff (a heap's children are
        never earlier than their parent), so it costs the due entries, not the whole heap."""
        heap = self._heap
        found: set[str] = set()
        pending = [0] if heap else []
        while pending:
            index = pending.pop()
            finished_at, job_id = heap[index]
            if finished_at > cutoff:
                continue
            job = jobs.get(job_id)
            if job is not None and job.finished_at == finished_at:
                found.add(job_id)
            child = 2 * index + 1
            pending.extend(i for i in (child, child + 1) if i < len(heap))
        return sorted(found)

    def compact(self, jobs: Mapping[str, TrackedJob]) -> None:
        """Drop stale entries (forgotten jobs, ones not finished at that time any more)."""
        heap = self._heap
        while heap and not _live(heap[0], jobs):
            heapq.heappop(heap)
        if len(heap) > 2 * len(jobs) + 64:
            self.reset(jobs)


def _live(entry: tuple[datetime, str], jobs: Mapping[str, TrackedJob]) -> bool:
    job = jobs.get(entry[1])
    return job is not None and job.finished_at == entry[0]
