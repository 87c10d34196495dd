"""The pipeline, wired in one place: poll -> detect -> rules -> render -> outbox.

`Pipeline.poll(source)` runs one poll of one source end to end and commits everything it
produced (job state, events, outbox rows, rule memory) in one store transaction; only after
that commit does it update its in-memory view, so a crash between the two loses nothing and
repeats nothing. Pushed observations (`Pipeline.push`) take the same path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bridge.config.schema import Config, Rule, SinkBase
from bridge.detect import (
    DetectSettings,
    detect,
    finished_ids,
    source_failed,
    source_succeeded,
)
from bridge.errors import SourceError, SourceMisconfigured, SourceUnavailable, TemplateError
from bridge.metrics import Metrics
from bridge.model import (
    Event,
    EventKind,
    JobStatus,
    Notification,
    PollResult,
    Priority,
    SourceHealth,
    TrackedJob,
    event_id,
)
from bridge.render import Renderer
from bridge.rules import Outcome, RuleBook, mark_for
from bridge.sources.base import Source
from bridge.store.base import PollCommit, RuleMark, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MarkKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """What one poll did, for the scheduler (backoff) and observers (demo, logs)."""

    source: str
    events: Sequence[Event] = ()
    notifications: Sequence[Notification] = ()
    error: SourceError | None = None


Observer = Callable[[PollOutcome], None]


@dataclass(slots=True)
class _SourceState:
    jobs: dict[str, TrackedJob] = field(default_factory=dict)
    health: SourceHealth | None = None
    watches: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


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
    ):
        self._config = config
        self._store = store
        self._sources = sources
        self._rulebook = rulebook
        self._renderer = renderer
        self._metrics = metrics
        self._clock = clock
        self._sinks: dict[str, SinkBase] = {s.name: s for s in config.sinks}
        self._state: dict[str, _SourceState] = {name: _SourceState() for name in sources}
        self._settings = {name: DetectSettings.from_source(s.config) for name, s in sources.items()}
        self._marks: dict[MarkKey, RuleMark] = {}
        self._has_repeats = any(rule.repeat for rule in config.rules)
        self.observers: list[Observer] = []

    async def load(self) -> None:
        """Read the remembered state of every source (start-up, after a restart)."""
        for name in self._sources:
            state = self._state[name]
            state.jobs = await self._store.load_jobs(name)
            state.health = await self._store.load_health(name)
            state.watches = set(await self._store.list_watches(name))
            self._metrics.tracked_jobs.labels(name).set(len(state.jobs))
            if state.health is not None:
                self._metrics.source_up.labels(name).set(1 if state.health.up else 0)
        self._marks = {(m.rule, m.source, m.job_id): m for m in await self._store.load_rule_marks()}

    def health(self, source: str) -> SourceHealth | None:
        return self._state[source].health

    def jobs(self, source: str) -> Mapping[str, TrackedJob]:
        return self._state[source].jobs

    def ids_to_poll(self, source: str) -> list[str]:
        """Job ids to look up by id: config `ids`, watches, and, for list APIs, every
        unfinished tracked job, so one that dropped off a capped list (Zendesk keeps the last
        100) is looked up instead of vanishing. Finished jobs are not polled again."""
        state = self._state[source]
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
        state = self._state[source]
        async with state.lock:
            added = await self._store.add_watch(source, job_id)
            state.watches.add(job_id)
            return added

    async def remove_watch(self, source: str, job_id: str) -> bool:
        state = self._state[source]
        async with state.lock:
            removed = await self._store.remove_watch(source, job_id)
            state.watches.discard(job_id)
            return removed

    async def wait_idle(self) -> None:
        """Return once no poll or push is under way (each source's lock is free)."""
        for state in self._state.values():
            async with state.lock:
                pass

    async def poll(self, name: str) -> PollOutcome:
        """Poll one source and commit what it changed. Never raises for a failed poll."""
        source = self._sources[name]
        state = self._state[name]
        async with state.lock:
            started = time.monotonic()
            self._metrics.polls.labels(name).inc()
            try:
                result = await source.poll(self.ids_to_poll(name))
            except SourceError as exc:
                self._metrics.poll_errors.labels(name).inc()
                return await self._commit_failure(name, exc)
            except Exception as exc:
                # A bug in a source must not look like "no news": mark the source down, loudly.
                log.exception("source %s: poll raised unexpectedly", name)
                self._metrics.poll_errors.labels(name).inc()
                return await self._commit_failure(
                    name, SourceUnavailable(f"internal error while polling: {type(exc).__name__}")
                )
            latency = time.monotonic() - started
            self._metrics.poll_latency.labels(name).observe(latency)
            return await self._commit_success(name, result, latency)

    async def push(self, name: str, observations: Sequence[JobStatus]) -> PollOutcome:
        """Feed pushed observations through the same detection as a poll."""
        state = self._state[name]
        async with state.lock:
            return await self._commit_observations(
                name, PollResult(observations=observations, complete=False), health=None
            )

    async def _commit_failure(self, name: str, exc: SourceError) -> PollOutcome:
        state = self._state[name]
        now = self._clock()
        # Hysteresis is for passing failures; a refused configuration will not heal itself.
        down_after = 1 if isinstance(exc, SourceMisconfigured) else \
            self._sources[name].config.down_after
        health, events = source_failed(source=name, health=state.health, reason=str(exc),
                                       now=now, down_after=down_after)
        self._metrics.source_up.labels(name).set(1 if health.up else 0)
        if health.up:
            log.warning("source %s: poll failed (%d of %d before it counts as down): %s",
                        name, health.failures, down_after, exc)
        elif len(events) or state.health is None or state.health.up:
            log.warning("source %s is down: %s", name, exc)
        else:
            log.debug("source %s still down: %s", name, exc)
        notifications, marks = self._route(events, now)
        await self._store.commit_poll(
            PollCommit(source=name, health=health, events=events,
                       notifications=notifications, rule_marks=marks, at=now)
        )
        self._after_commit(events, notifications, marks)
        state.health = health
        outcome = PollOutcome(source=name, events=events, notifications=notifications, error=exc)
        self._notify(outcome)
        return outcome

    async def _commit_success(self, name: str, result: PollResult, latency: float) -> PollOutcome:
        state = self._state[name]
        now = self._clock()
        health, up_events = source_succeeded(
            source=name, health=state.health, now=now, latency=latency
        )
        self._metrics.source_up.labels(name).set(1)
        if up_events:
            log.info("source %s is up again", name)
        return await self._commit_observations(name, result, health=health, prefix=up_events)

    async def _commit_observations(
        self,
        name: str,
        result: PollResult,
        *,
        health: SourceHealth | None,
        prefix: Sequence[Event] = (),
    ) -> PollOutcome:
        state = self._state[name]
        now = self._clock()
        detection = detect(
            source=name, known=state.jobs, poll=result, now=now, settings=self._settings[name]
        )
        events = [*prefix, *detection.events]
        upserted = {job.id: job for job in detection.upserts}
        # Jobs named in the config's `ids` are kept once finished: forgetting one would make
        # the next poll look it up again and announce it as new every `retain`.
        removed = set(detection.removals).difference(self._sources[name].config.ids)
        if self._has_repeats:
            after = (upserted.get(i, j) for i, j in state.jobs.items() if i not in removed)
            events.extend(self._repeats(name, [*after, *(j for i, j in upserted.items()
                                                        if i not in state.jobs)], now))
        notifications, marks = self._route(events, now)
        finished = finished_ids(state.watches, ChainMap(upserted, state.jobs))
        await self._store.commit_poll(
            PollCommit(
                source=name,
                upserts=detection.upserts,
                removals=sorted(removed),
                health=health,
                events=events,
                notifications=notifications,
                rule_marks=marks,
                finished_watches=finished,
                at=now,
            )
        )
        # Applied in place, after the commit: copying 100,000 jobs per poll would cost more
        # than the whole detection pass.
        state.jobs.update(upserted)
        for job_id in removed:
            state.jobs.pop(job_id, None)
        state.watches.difference_update(finished)
        if health is not None:
            state.health = health
        self._metrics.tracked_jobs.labels(name).set(len(state.jobs))
        self._after_commit(events, notifications, marks)
        outcome = PollOutcome(source=name, events=events, notifications=notifications)
        self._notify(outcome)
        return outcome

    def _repeats(self, name: str, jobs: Iterable[TrackedJob], now: datetime) -> list[Event]:
        events = []
        for rule, job in self._rulebook.due_repeats(jobs, self._marks, now):
            events.append(
                Event(
                    id=event_id(name, job.id, "repeat", rule.name, now.isoformat()),
                    on=rule.on,
                    source=name,
                    at=now,
                    job=job.status,
                    previous=job.status,
                    to_state=job.status.state,
                    first_seen=job.first_seen,
                    duration=(now - job.started_at) if job.started_at else None,
                    reason=f"repeat: still {job.status.state} (rule {rule.name})",
                    repeat_of=rule.name,
                )
            )
        return events

    def _route(
        self, events: Sequence[Event], now: datetime
    ) -> tuple[list[Notification], list[RuleMark]]:
        """Rules pick the events to notify; templates render one message per sink."""
        notifications: list[Notification] = []
        marks: list[RuleMark] = []
        # Marks made earlier in this batch count (throttle), but join the shared memory only
        # once the batch is committed.
        batch: dict[MarkKey, RuleMark] = {}
        memory = ChainMap(batch, self._marks)
        for event in events:
            log.info("event %s %s %s", event.on, event.source, _describe(event))
            for decision in self._rulebook.evaluate(event, memory, now):
                if decision.outcome is not Outcome.MATCHED:
                    continue
                rendered = self._render_all(decision.rule, event)
                if not rendered:
                    continue
                notifications.extend(rendered)
                mark = mark_for(decision, event, now)
                if mark is not None:
                    marks.append(mark)
                    batch[(mark.rule, mark.source, mark.job_id)] = mark
        return notifications, marks

    def _render_all(self, rule: Rule, event: Event) -> list[Notification]:
        out = []
        for sink_name in rule.notify:
            sink = self._sinks[sink_name]
            try:
                payload = self._renderer.render(rule, event, sink)
            except TemplateError as exc:
                # One broken template must not stop the other rules, sinks or the pipeline.
                self._metrics.render_errors.labels(rule.name).inc()
                log.error("rule %s: template failed for sink %s: %s", rule.name, sink_name, exc)
                continue
            job = event.job
            out.append(
                Notification(
                    event_id=event.id,
                    rule=rule.name,
                    sink=sink_name,
                    source=event.source,
                    job_id=job.id if job else None,
                    payload=payload,
                    on=event.on,
                    terminal=bool(job and job.state.terminal),
                    state=str(job.state) if job else None,
                    priority=rule.priority or Priority.of(event),
                )
            )
        return out

    def _after_commit(
        self,
        events: Sequence[Event],
        notifications: Sequence[Notification],
        marks: Sequence[RuleMark],
    ) -> None:
        # Counted only once committed: a failed commit is retried by the next poll, which
        # would count the same events again.
        for event in events:
            self._metrics.events.labels(str(event.on), event.source).inc()
        for _event_id, rule in {(n.event_id, n.rule) for n in notifications}:
            self._metrics.rule_matches.labels(rule).inc()
        for mark in marks:
            self._marks[(mark.rule, mark.source, mark.job_id)] = mark

    def _notify(self, outcome: PollOutcome) -> None:
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer (demo printer, waker) must never break a poll
                log.exception("observer failed")


def _describe(event: Event) -> str:
    if event.on is EventKind.TRANSITION and event.job:
        return f"{event.job.id}: {event.from_state} -> {event.to_state}"
    if event.job:
        progress = f" {event.job.progress:.0f}%" if event.job.progress is not None else ""
        return f"{event.job.id}: {event.job.state}{progress}"
    return event.reason or ""
