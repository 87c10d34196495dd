"""The pipeline: runs each poll through the stages and commits it (bridge.stages).

`Pipeline.poll(source)` runs one poll of one source through the stage list built by
`bridge.stages.build_stages` (detect -> repeat -> route -> render -> enqueue): the last
stage commits everything the poll produced (job state, events, outbox rows, rule memory) in
one store transaction; only after that commit does the pipeline update its in-memory view,
so a crash between the two loses nothing and repeats nothing. Pushed observations
(`Pipeline.push`) take the same path. The pipeline owns what is not a stage's business:
one lock per source, the poll's error handling, metrics and observers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bridge.config.schema import Config
from bridge.errors import SourceError, SourceUnavailable
from bridge.logs import for_sink, for_source
from bridge.metrics import Metrics
from bridge.model import Event, JobStatus, Notification, PollResult, SourceHealth, TrackedJob
from bridge.render import Renderer
from bridge.rules import RuleBook
from bridge.sources.base import Source
from bridge.stages import Batch, Context, Memory, build_stages
from bridge.store.base import StaleCommit, Store

log = logging.getLogger(__name__)

# The lease a polled source's commits are fenced by (bridge.leases names it the same).
SOURCE_LEASE = "source:"

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """What one poll did, for the scheduler (backoff) and observers (demo, logs)."""

    source: str
    events: Sequence[Event] = ()
    notifications: Sequence[Notification] = ()
    # Muted by a silence or a window: recorded in the outbox as silenced, not sent.
    silenced: Sequence[Notification] = ()
    error: SourceError | None = None


Observer = Callable[[PollOutcome], None]


class Pipeline:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        sources: Mapping[str, Source],
        rulebook: RuleBook,
        renderer: Renderer,
        metrics: Metrics,
        clock: Clock,
        instance: str | None = None,
    ):
        self._store = store
        # A shared store (several instances): commits compare-and-set, polls are fenced by
        # the source's lease held as `instance`, watches are read from the store.
        self._shared = store.shared
        self._instance = instance
        self._sources = sources
        self._metrics = metrics
        self._clock = clock
        self._stages = build_stages(config, rulebook, renderer, store)
        self._memory = Memory(sources)
        self._locks = {name: asyncio.Lock() for name in sources}
        self.observers: list[Observer] = []

    async def load(self) -> None:
        """Read the remembered state of every source (start-up, after a restart)."""
        for name in self._sources:
            await self._load_source(name, marks=False)
        self._memory.marks.update(
            ((m.rule, m.source, m.job_id), m) for m in await self._store.load_rule_marks()
        )

    async def reload(self, name: str) -> None:
        """Read one source's state again from the store: after this instance took its lease
        (another instance polled it meanwhile), or after a commit was refused as stale."""
        async with self._locks[name]:
            await self._load_source(name)

    async def _load_source(self, name: str, *, marks: bool = True) -> None:
        state = self._memory.sources[name]
        state.load(await self._store.load_jobs(name))
        state.health = await self._store.load_health(name)
        state.watches = set(await self._store.list_watches(name))
        self._metrics.tracked_jobs.labels(name).set(len(state.jobs))
        if state.health is not None:
            self._metrics.source_up.labels(name).set(1 if state.health.up else 0)
        if marks:
            kept = {k: m for k, m in self._memory.marks.items() if m.source != name}
            kept.update(((m.rule, m.source, m.job_id), m)
                        for m in await self._store.load_rule_marks(name))
            self._memory.marks.clear()
            self._memory.marks.update(kept)

    def health(self, source: str) -> SourceHealth | None:
        return self._memory.sources[source].health

    def jobs(self, source: str) -> Mapping[str, TrackedJob]:
        return self._memory.sources[source].jobs

    def ids_to_poll(self, source: str) -> list[str]:
        """Job ids to look up by id: config `ids`, watches, and, for list APIs, every
        unfinished tracked job, so one that dropped off a capped list (Zendesk keeps the last
        100) is looked up instead of vanishing. Finished jobs are not polled again."""
        state = self._memory.sources[source]
        wanted = [*self._sources[source].config.ids, *sorted(state.watches)]
        if self._sources[source].lists_jobs:
            wanted.extend(i for i, job in state.jobs.items() if not job.done)
        seen: set[str] = set()
        ids = []
        for job_id in wanted:
            job = state.jobs.get(job_id)
            if job_id in seen or (job is not None and job.done):
                continue
            seen.add(job_id)
            ids.append(job_id)
        return ids

    async def add_watch(self, source: str, job_id: str) -> bool:
        async with self._locks[source]:
            added = await self._store.add_watch(source, job_id)
            self._memory.sources[source].watches.add(job_id)
            return added

    async def remove_watch(self, source: str, job_id: str) -> bool:
        async with self._locks[source]:
            removed = await self._store.remove_watch(source, job_id)
            self._memory.sources[source].watches.discard(job_id)
            return removed

    async def wait_idle(self) -> None:
        """Return once no poll or push is under way (each source's lock is free)."""
        for lock in self._locks.values():
            async with lock:
                pass

    async def poll(self, name: str) -> PollOutcome:
        """Poll one source and commit what it changed. Never raises for a failed poll."""
        source = self._sources[name]
        async with self._locks[name]:
            started = time.monotonic()
            self._metrics.polls.labels(name).inc()
            if self._shared:
                # Any instance may have added a watch (`bridge watch` reaches any of them).
                state = self._memory.sources[name]
                state.watches = set(await self._store.list_watches(name))
            try:
                result = await source.poll(self.ids_to_poll(name))
            except SourceError as exc:
                self._metrics.poll_errors.labels(name).inc()
                return await self._run(name, Batch(error=exc))
            except Exception as exc:
                # A bug in a source must not look like "no news": mark the source down, loudly.
                for_source(log, name).exception("source %s: poll raised unexpectedly", name)
                self._metrics.poll_errors.labels(name).inc()
                error = SourceUnavailable(f"internal error while polling: {type(exc).__name__}")
                return await self._run(name, Batch(error=error))
            latency = time.monotonic() - started
            self._metrics.poll_latency.labels(name).observe(latency)
            return await self._run(name, Batch(poll=result, latency=latency))

    async def push(self, name: str, observations: Sequence[JobStatus]) -> PollOutcome:
        """Feed pushed observations through the same stages as a poll."""
        async with self._locks[name]:
            poll = PollResult(observations=observations, complete=False)
            if self._shared:
                # Any instance takes pushes: start from what the store holds now.
                await self._load_source(name)
            return await self._run(name, Batch(poll=poll, pushed=True), retries=2)

    async def _run(self, name: str, batch: Batch, *, retries: int = 0) -> PollOutcome:
        while True:
            try:
                committed = await self._stages.run(self._context(name, batch), batch)
                break
            except StaleCommit as exc:
                # Another instance wrote this source's state (or holds its lease): this batch
                # was computed from stale state, commits nothing and emits nothing. A poll is
                # simply repeated by the next one; a push is run again on fresh state.
                self._metrics.stale_commits.labels(name).inc()
                for_source(log, name).info("source %s: %s; reloading its state from the store",
                                           name, exc)
                await self._load_source(name)
                if retries <= 0:
                    return PollOutcome(source=name)
                retries -= 1
        batch = committed
        self._memory.apply(name, batch)
        self._count(name, batch)
        outcome = PollOutcome(source=name, events=batch.events,
                              notifications=batch.notifications,
                              silenced=batch.silenced_notifications, error=batch.error)
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer (demo printer, waker) must never break a poll
                log.exception("observer failed")
        return outcome

    def _context(self, name: str, batch: Batch) -> Context:
        ctx = self._memory.context(name, self._clock())
        if not self._shared:
            return ctx
        # Pushes are not fenced: any instance accepts them; compare-and-set orders them.
        fence = (None if batch.pushed or self._instance is None
                 else (SOURCE_LEASE + name, self._instance))
        return replace(ctx, compare_and_set=True, fence=fence)

    def _count(self, name: str, batch: Batch) -> None:
        # Counted only once committed: a failed commit is retried by the next poll, which
        # would count the same events again. Grouped first: a label lookup costs more than
        # the increment, and a first poll of a big source has 100,000 events.
        metrics = self._metrics
        if batch.health is not None:
            metrics.source_up.labels(name).set(1 if batch.health.up else 0)
        if batch.poll is not None:
            metrics.tracked_jobs.labels(name).set(len(self._memory.sources[name].jobs))
        for (kind, source), count in Counter((e.on, e.source) for e in batch.events).items():
            metrics.events.labels(str(kind), source).inc(count)
        rules = Counter(rule for _, rule in {(n.event_id, n.rule) for n in batch.notifications})
        for rule, count in rules.items():
            metrics.rule_matches.labels(rule).inc(count)
        for (rule, sink), count in Counter(
                (n.rule, n.sink) for n in batch.silenced_notifications).items():
            metrics.silenced.labels(rule, sink).inc(count)
        for failure in batch.failures:
            for_sink(log, failure.sink).error(
                "rule %s: template failed for sink %s: %s", failure.rule, failure.sink,
                failure.error)
            metrics.render_errors.labels(failure.rule).inc()
