"""What the stages remember between batches: per source jobs, health, watches; rule marks.

The pipeline and `replay` keep one `Memory` each, read by the stages through `Context`
(read-only views, no copies) and changed only by `apply`, once a batch is committed (or,
for a replay, once it has run), so a failed commit leaves the memory as the store has it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bridge.deadlines import FinishTimes
from bridge.model import SourceHealth, TrackedJob
from bridge.stages.base import Batch, Context, MarkKey
from bridge.store.base import RuleMark


@dataclass(slots=True)
class SourceMemory:
    jobs: dict[str, TrackedJob] = field(default_factory=dict)
    health: SourceHealth | None = None
    watches: set[str] = field(default_factory=set)
    finish_times: FinishTimes = field(default_factory=FinishTimes)
    # Ids of the tracked jobs that are not done, in the order they were first tracked: what a
    # list poll looks up by id, kept as jobs change so a poll need not walk every tracked job
    # (most of them finished and retained).
    unfinished: dict[str, None] = field(default_factory=dict)

    def load(self, jobs: dict[str, TrackedJob]) -> None:
        """Replace the jobs with ones read from the store."""
        self.jobs = jobs
        self.finish_times.reset(jobs)
        self.unfinished = {job_id: None for job_id, job in jobs.items() if not job.done}

    def refresh(self, ids: Iterable[str], loaded: Mapping[str, TrackedJob]) -> None:
        """Replace the records of `ids` with the store's (`loaded`; an id it lacks is gone)."""
        for job_id in ids:
            job = loaded.get(job_id)
            if job is None:
                self.jobs.pop(job_id, None)
                self.unfinished.pop(job_id, None)
                continue
            self.jobs[job_id] = job
            if job.done:
                self.unfinished.pop(job_id, None)
            else:
                self.unfinished.setdefault(job_id)
        # Stale heap entries are skipped by `due` (it checks the job's finish time).
        self.finish_times.add(loaded.values())


class Memory:
    def __init__(self, sources: Iterable[str]):
        self.sources = {name: SourceMemory() for name in sources}
        self.marks: dict[MarkKey, RuleMark] = {}

    def context(self, source: str, now: datetime) -> Context:
        state = self.sources[source]
        return Context(source=source, now=now, jobs=state.jobs, health=state.health,
                       watches=state.watches, marks=self.marks,
                       finish_times=state.finish_times)

    def refresh_marks(self, source: str, job_ids: Collection[str], rules: Iterable[str],
                      marks: Iterable[RuleMark]) -> None:
        """Replace the rule marks of one source's `job_ids` with the store's (`rules`: the
        rule names there can be marks of; looked up by key, not by a walk over every mark)."""
        for rule in rules:
            for job_id in job_ids:
                self.marks.pop((rule, source, job_id), None)
        self.marks.update(((m.rule, m.source, m.job_id), m) for m in marks)

    def apply(self, source: str, batch: Batch) -> None:
        state = self.sources[source]
        # Applied in place, after the commit: copying 100,000 jobs per poll would cost more
        # than the whole detection pass.
        jobs, unfinished = state.jobs, state.unfinished
        for job in batch.upserts:
            jobs[job.id] = job
            if job.done:
                unfinished.pop(job.id, None)
            else:
                unfinished.setdefault(job.id)
        for job_id in batch.removals:
            jobs.pop(job_id, None)
            unfinished.pop(job_id, None)
        if batch.removals:
            # The store forgets a removed job's rule marks with it (so after a restart they
            # are gone): forget them here too, or a compare-and-set would expect them.
            removed = frozenset(batch.removals)
            for key in [k for k in self.marks if k[1] == source and k[2] in removed]:
                del self.marks[key]
        state.finish_times.add(batch.upserts)
        state.finish_times.compact(jobs)
        state.watches.difference_update(batch.finished_watches)
        if batch.health is not None:
            state.health = batch.health
        for mark in batch.marks:
            self.marks[(mark.rule, mark.source, mark.job_id)] = mark
