"""The shape every pipeline stage has: a batch in, a batch out, with a context.

Like Alertmanager's `notify.Stage` (`Exec(ctx, logger, alerts...) -> (ctx, alerts, error)`):
a stage takes what flows, may drop, add or transform it, and hands it on; `Chain` runs
stages in order (Alertmanager's `MultiStage`). Errors are raised, not returned.

What flows is one `Batch`: everything one poll (or one pushed body, one `bridge test`
event) has produced so far. Each stage reads the fields the stages before it filled and
returns a copy with its own filled in: detect fills `events`, `upserts`, `health`; route
fills `matches` and `skipped`; render fills `notifications`, `marks` and `failures`. Only
the last stage (enqueue) touches the store; every other stage is a pure decision over the
batch and the `Context`, and says why it dropped something with a named reason
(`Skip.decision.outcome`, a `bridge.rules.Outcome`).

The method is async although only enqueue awaits anything: one signature for every stage,
so the commit is a stage like the others and a future stage that must ask something (a
silence store, a group table) fits the list without a second kind of stage. The cost is
one coroutine per stage per batch (about a microsecond), never per job or per event.

Metrics are not a stage's business: the pipeline counts from the committed batch, so a
commit that fails (and is retried by the next poll) counts nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from bridge.config.schema import Rule
from bridge.deadlines import FinishTimes
from bridge.errors import SourceError
from bridge.groups.model import GroupEntry
from bridge.model import Event, Notification, PollResult, SourceHealth, TrackedJob
from bridge.rules import Decision
from bridge.store.base import RuleMark

MarkKey = tuple[str, str, str]
_NO_JOBS: Mapping[str, TrackedJob] = MappingProxyType({})
_NO_MARKS: Mapping[MarkKey, RuleMark] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a stage may read besides the batch: the clock, the source, the memory.

    `jobs`, `health` and `watches` are the source's state as committed before this batch;
    `marks` is the rule memory (throttle, repeat) of every source; `finish_times` the
    source's done jobs by finish time, to find expired ones (None: detection walks the
    unobserved jobs). All read-only views: the pipeline applies a batch to them only once
    the batch is committed.
    """

    source: str
    now: datetime
    jobs: Mapping[str, TrackedJob] = field(default_factory=lambda: _NO_JOBS)
    health: SourceHealth | None = None
    watches: AbstractSet[str] = frozenset()
    marks: Mapping[MarkKey, RuleMark] = field(default_factory=lambda: _NO_MARKS)
    # Several instances on one store: commit with compare-and-set on the job records read
    # (`jobs`), and, for a polled source, only while this instance holds its lease.
    compare_and_set: bool = False
    fence: tuple[str, str] | None = None
    finish_times: FinishTimes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """A rule that matched an event; `mark` is the rule memory it leaves once sent."""

    event: Event
    rule: Rule
    mark: RuleMark | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip:
    """A rule tried on an event that does not notify, with the rules engine's reason."""

    event: Event
    decision: Decision


@dataclass(frozen=True, slots=True, kw_only=True)
class Silenced:
    """A match muted by a silence or a window: rendered and recorded, never sent."""

    match: Match
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderFailure:
    """A template that failed for one (rule, sink). The sink gets the bundled template's
    message for the event instead (`sent_default`), or nothing if that failed too."""

    event: Event
    rule: str
    sink: str
    error: str
    sent_default: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """What flows through the stages. The inputs first, then each stage's output."""

    # Inputs: a successful poll (or pushed observations), or the error of a failed poll.
    # With neither, `events` is the input (bridge test, bridge render).
    poll: PollResult | None = None
    error: SourceError | None = None
    pushed: bool = False
    latency: float | None = None
    # detect, repeat: the new health (None: unchanged), events in order, job records.
    health: SourceHealth | None = None
    events: Sequence[Event] = ()
    upserts: Sequence[TrackedJob] = ()
    removals: Sequence[str] = ()
    finished_watches: Sequence[str] = ()
    # route: the (event, rule) pairs to notify, and the rules that decided not to.
    matches: Sequence[Match] = ()
    skipped: Sequence[Skip] = ()
    # silence: the matches it muted (taken out of `matches`), the silences that ended
    # because their job succeeded (until_resolved).
    silenced: Sequence[Silenced] = ()
    ended_silences: Sequence[str] = ()
    # group: the events of rules with `group_by`, joining their groups (not rendered here).
    grouped: Sequence[GroupEntry] = ()
    # render: one notification per (match, sink), the marks of what was rendered.
    notifications: Sequence[Notification] = ()
    marks: Sequence[RuleMark] = ()
    failures: Sequence[RenderFailure] = ()
    # render: the silenced matches' notifications (`Notification.silenced` set), recorded only.
    silenced_notifications: Sequence[Notification] = ()


class Stage(Protocol):
    """One step of the pipeline. `run` returns the batch handed to the next stage."""

    @property
    def name(self) -> str: ...

    async def run(self, ctx: Context, batch: Batch) -> Batch: ...


@dataclass(frozen=True, slots=True)
class Chain:
    """Stages run in order, each on the batch the one before returned (a `MultiStage`)."""

    stages: tuple[Stage, ...]

    @property
    def name(self) -> str:
        return " -> ".join(stage.name for stage in self.stages)

    def get(self, name: str) -> Stage:
        """The stage called `name` (to run one alone, as `bridge render` runs render)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        for stage in self.stages:
            batch = await stage.run(ctx, batch)
        return batch
