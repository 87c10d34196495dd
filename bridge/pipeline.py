"""The pipeline: runs each poll through the stages and commits it (bridge.stages).

`Pipeline.poll(source)` runs one poll of one source through the stage list built by
`bridge.stages.build_stages` (detect -> repeat -> route -> render -> enqueue): the enqueue
stage commits everything the poll produced (job state, events, outbox rows, rule memory) in
one store transaction. Pushed observations (`Pipeline.push`) take the same path. The
pipeline owns what is not a stage's business: one lock per source, the poll's error
handling, metrics and observers, and group commit.

Group commit: pushes to a source that arrive while one is being committed wait for the
source's lock; the one that gets it next takes every waiting push, runs each through the
decision stages in arrival order (each seeing the memory the ones before it left) and
commits them all in one transaction, then answers each. A push is answered only once its
transaction is committed, so nothing answered 2xx can be lost; and one transaction (one
fsync) per group instead of per push is what lets pushes go faster than the disk syncs.
The memory is applied before the commit, so the next push of the group sees it; if the
commit fails, every push of the group fails and the source's memory is read back from the
store (the store, not the memory, is the truth), so memory and store never disagree. A
stale group (another instance wrote the source, shared store) is run again on fresh state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bridge.config.schema import Config
from bridge.errors import SourceError, SourceUnavailable, StoreError
from bridge.logs import for_sink, for_source
from bridge.metrics import Metrics
from bridge.model import Event, JobStatus, Notification, PollResult, SourceHealth, TrackedJob
from bridge.render import Renderer
from bridge.rules import RuleBook
from bridge.sources.base import Source
from bridge.stages import Batch, Chain, Context, Memory, build_stages
from bridge.stages.enqueue import Enqueue, Handoff, commit_of
from bridge.store.base import PollCommit, StaleCommit, Store

log = logging.getLogger(__name__)

# The lease a polled source's commits are fenced by (bridge.leases names it the same).
SOURCE_LEASE = "source:"
# A push on a shared store reads back the finished jobs due to be forgotten this much early.
_EXPIRY_MARGIN = timedelta(minutes=1)

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
    # Fed by a push, not a poll (the dashboard's poll chart counts polls only).
    pushed: bool = False


Observer = Callable[[PollOutcome], None]


@dataclass(slots=True)
class _Waiting:
    """A batch waiting for its source's lock, and the caller waiting for its outcome."""

    batch: Batch
    outcome: asyncio.Future[PollOutcome]


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
        stages = build_stages(config, rulebook, renderer, store)
        # The decision stages run per batch; the last one, enqueue, commits a whole group.
        *decide, enqueue = stages.stages
        assert isinstance(enqueue, Enqueue)
        self._decide = Chain(tuple(decide))
        self._enqueue = enqueue
        self._memory = Memory(sources)
        self._locks = {name: asyncio.Lock() for name in sources}
        self._retain = {s.name: s.retain for s in config.sources}
        self._rules = [rule.name for rule in config.rules]
        self._waiting: dict[str, list[_Waiting]] = {name: [] for name in sources}
        # Sources whose memory must be read back from the store before the next batch.
        self._stale: set[str] = set()
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
            wanted.extend(state.unfinished)  # kept by the memory: no walk over every job
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

    def hand_new_rows_to(self, handoff: Handoff) -> None:
        """Let `handoff` (the delivery workers) send the rows each commit queues for the
        sinks it takes, at once, instead of waiting for its next claim."""
        self._enqueue.handoff = handoff

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
        """Feed pushed observations through the same stages as a poll; returns once they
        are committed, possibly in one transaction with other pushes (group commit)."""
        poll = PollResult(observations=observations, complete=False)
        waiting = _Waiting(Batch(poll=poll, pushed=True),
                           asyncio.get_running_loop().create_future())
        self._waiting[name].append(waiting)
        async with self._locks[name]:
            if not waiting.outcome.done():
                group, self._waiting[name] = self._waiting[name], []
                # Any instance takes pushes (shared store): start from what the store holds
                # now of the jobs the group names, not from a reload of the whole source.
                fresh = self._pushed_ids(name, group) if self._shared else None
                await self._run_group(name, group, retries=2, fresh=fresh)
        return waiting.outcome.result()

    def _pushed_ids(self, name: str, group: Sequence[_Waiting]) -> set[str]:
        """The jobs a group of pushes decides about: the ones it observes, and the finished
        ones detection may forget (`retain`) while deciding (a minute's margin, so none
        becomes due between the read and the decision). The others it never reads."""
        ids = {obs.id for waiting in group if waiting.batch.poll is not None
               for obs in waiting.batch.poll.observations}
        retain = self._retain[name]
        state = self._memory.sources[name]
        cutoff = self._clock() - retain + _EXPIRY_MARGIN
        ids.update(state.finish_times.due(cutoff, state.jobs))
        return ids

    async def _refresh(self, name: str, ids: set[str]) -> None:
        """Read back from the store the records of `ids` (and their rule marks) and the
        source's watches; every other job keeps what the memory has (a commit that writes
        one another instance changed is refused by compare-and-set and run again after a
        full reload)."""
        state = self._memory.sources[name]
        jobs = await self._store.load_jobs(name, ids)
        marks = await self._store.load_rule_marks(name, ids)
        state.watches = set(await self._store.list_watches(name))
        state.refresh(ids, jobs)
        self._memory.refresh_marks(name, ids, self._rules, marks)

    async def _run(self, name: str, batch: Batch) -> PollOutcome:
        waiting = _Waiting(batch, asyncio.get_running_loop().create_future())
        await self._run_group(name, [waiting])
        return waiting.outcome.result()

    async def _run_group(self, name: str, group: list[_Waiting], *, retries: int = 0,
                         fresh: set[str] | None = None) -> None:
        """Run each batch of the group through the decision stages, commit them all in one
        transaction, and then (only then) give each its outcome; a failure becomes every
        unanswered batch's outcome. `fresh`: jobs to read back from the store first.
        Holds the source's lock."""
        try:
            if fresh is not None:
                await self._refresh(name, fresh)
            while not await self._decide_and_commit(name, group):
                # Another instance wrote this source's state (or holds its lease): the group
                # was computed from stale state and committed nothing. A poll is simply
                # repeated by the next one; pushes are run again on fresh state.
                if retries <= 0:
                    for waiting in group:
                        if not waiting.outcome.done():
                            waiting.outcome.set_result(PollOutcome(source=name))
                    return
                retries -= 1
        except Exception as exc:
            self._fail(group, exc)
        except BaseException:  # cancelled: the callers still get an answer
            self._fail(group, StoreError(f"the commit of source {name!r} was interrupted"))
            raise
        finally:
            if name in self._stale:
                await self._reload_quietly(name)

    async def _decide_and_commit(self, name: str, group: list[_Waiting]) -> bool:
        """False when the commit was refused as stale (the memory is read back first)."""
        if name in self._stale:
            await self._reload(name)
        decided: list[tuple[_Waiting, Batch]] = []
        commits: list[PollCommit] = []
        for waiting in group:
            if waiting.outcome.done():
                continue
            ctx = self._context(name, waiting.batch)
            try:
                batch = await self._decide.run(ctx, waiting.batch)
            except Exception as exc:  # one batch's failure is its own, not the group's
                waiting.outcome.set_exception(exc)
                continue
            commits.append(commit_of(ctx, batch))
            # Applied now, so the next batch of the group sees it; read back on failure.
            self._memory.apply(name, batch)
            self._stale.add(name)
            decided.append((waiting, batch))
        if not decided:
            return True
        try:
            await self._enqueue.run_group(commits)
        except StaleCommit as exc:
            self._metrics.stale_commits.labels(name).inc()
            for_source(log, name).info("source %s: %s; reloading its state from the store",
                                       name, exc)
            await self._reload(name)
            return False
        self._stale.discard(name)
        for waiting, batch in decided:
            waiting.outcome.set_result(self._committed(name, batch))
        return True

    async def _reload(self, name: str) -> None:
        """Read one source's memory back from the store; until that works the source
        stays stale and every batch of it tries again first."""
        self._stale.add(name)
        await self._load_source(name)
        self._stale.discard(name)

    async def _reload_quietly(self, name: str) -> None:
        try:
            await self._reload(name)
        except Exception as exc:  # the next batch of the source tries again first
            for_source(log, name).error(
                "source %s: could not read its state back after a failed commit: %s",
                name, exc)

    @staticmethod
    def _fail(group: list[_Waiting], error: Exception) -> None:
        for waiting in group:
            if not waiting.outcome.done():
                waiting.outcome.set_exception(error)

    def _committed(self, name: str, batch: Batch) -> PollOutcome:
        self._count(name, batch)
        outcome = PollOutcome(source=name, events=batch.events,
                              notifications=batch.notifications,
                              silenced=batch.silenced_notifications, error=batch.error,
                              pushed=batch.pushed)
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
        rules.update(entry.rule for entry in batch.grouped)
        for rule, count in rules.items():
            metrics.rule_matches.labels(rule).inc(count)
        for (rule, sink), count in Counter(
                (n.rule, n.sink) for n in batch.silenced_notifications).items():
            metrics.silenced.labels(rule, sink).inc(count)
        for failure in batch.failures:
            instead = ("; sent the bundled template's message instead" if failure.sent_default
                       else "; nothing was sent")
            for_sink(log, failure.sink).error(
                "rule %s: template failed for sink %s: %s%s", failure.rule, failure.sink,
                failure.error, instead)
            metrics.render_errors.labels(failure.rule).inc()
