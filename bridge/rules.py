"""The rules engine: which rules notify about an event, and when reminders are due.

Pure decisions over plain values: no Jinja, no I/O, and the clock is an argument. The `when`
compiler is injected (bridge.render provides the sandboxed Jinja one), so this module can be
tested with plain tables.

Rules are tried in file order; the first rule that matches wins, unless it says
`continue = true`, in which case later rules are tried too. A rule that matched but is held
back by `throttle` still counts as the match: a throttled failure alert must not fall through
to a catch-all rule further down. A `when` that raises skips only its own rule.

Filters, in the order they are checked:

- `on`: the event kind (rules for other kinds are not tried, nor listed in the decisions).
- `source`: a glob (fnmatch, case-sensitive) over the source name.
- `from`: for transitions, the state before; for other events, the state of `previous`
  (the job as last seen), so `appeared` (no previous) never matches a `from` filter.
- `to`: for transitions, the state after; for other events, the job's current state
  (so `on = "stalled"`, `to = "running"` means "stalled while running").
  Events without a job (`source_down`, `source_up`) never match `from` or `to`.
- `when`: a sandboxed expression over the event's names (see `event_context`).

Throttle and repeat are remembered per (rule, source, job id) as `RuleMark`s; source events
use an empty job id, so they are throttled per (rule, source). `due_repeats` finds jobs still
in the state a `repeat` rule notified about; the reminder event for one carries
`repeat_of = <rule name>` and is evaluated by that rule only, without `from` or `throttle`
(the job has not moved, and `repeat` already timed it).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bridge.config.schema import Rule
from bridge.errors import TemplateError
from bridge.model import Event, EventKind, JobState, TrackedJob
from bridge.store.base import RuleMark

log = logging.getLogger(__name__)

MarkKey = tuple[str, str, str]
Predicate = Callable[[Mapping[str, Any]], Any]
WhenCompiler = Callable[[str], Predicate]


class Outcome(StrEnum):
    """What a rule decided about one event."""

    MATCHED = "matched"
    THROTTLED = "throttled"
    FILTERED = "filtered"
    WHEN_FAILED = "when_failed"


class Filter(StrEnum):
    """The filter that turned an event away."""

    ON = "on"  # not tried at all: a rule for another kind of event
    SOURCE = "source"
    FROM = "from"
    TO = "to"
    WHEN = "when"
    REPEAT = "repeat"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    rule: Rule
    outcome: Outcome
    # The failing filter, for FILTERED (and WHEN for WHEN_FAILED).
    filter: Filter | None = None
    reason: str = ""

    def describe(self) -> str:
        what = f"rule {self.rule.name}: {self.outcome.name}"
        if self.filter is not None:
            what = f"{what} by {self.filter}"
        return f"{what}: {self.reason}" if self.reason else what


def event_context(event: Event, rule: str = "") -> dict[str, Any]:
    """The names templates and `when` expressions see (contract section 4)."""
    return {
        "event": event,
        "on": event.on,
        "source": event.source,
        "job": event.job,
        "previous": event.previous,
        "from": event.from_state,
        "to": event.to_state,
        "at": event.at,
        "duration": event.duration,
        "first_seen": event.first_seen,
        "reason": event.reason,
        "rule": rule,
    }


def _states(states: Sequence[JobState]) -> str:
    return ", ".join(states)


def _before(event: Event) -> JobState | None:
    if event.on is EventKind.TRANSITION and event.from_state is not None:
        return event.from_state
    return event.previous.state if event.previous is not None else None


def _after(event: Event) -> JobState | None:
    if event.on is EventKind.TRANSITION and event.to_state is not None:
        return event.to_state
    if event.job is not None:
        return event.job.state
    return event.to_state


class _CompiledRule:
    """A rule with its filters prepared once, so an event costs a few lookups per rule."""

    __slots__ = (
        "after", "before", "continue_", "matched", "name", "predicate", "rule", "source_match"
    )

    def __init__(self, rule: Rule, predicate: Predicate | None):
        self.rule = rule
        self.name = rule.name
        self.continue_ = rule.continue_
        self.predicate = predicate
        # Decisions are frozen values: every match of this rule can share one.
        self.matched = Decision(rule=rule, outcome=Outcome.MATCHED)
        # fnmatchcase translates (and caches) the glob on every call; compile it once, and
        # skip the catch-all `*` altogether.
        self.source_match = (
            None if rule.source == "*" else re.compile(fnmatch.translate(rule.source)).match
        )
        self.before = frozenset(rule.from_) if rule.from_ is not None else None
        self.after = frozenset(rule.to) if rule.to is not None else None

    def static_filter(self, event: Event, reminder: bool) -> tuple[Filter, str] | None:
        """The first of source/from/to that turns the event away, with why (`on` is settled
        by the RuleBook's index)."""
        rule = self.rule
        if self.source_match is not None and self.source_match(event.source) is None:
            return Filter.SOURCE, f"{event.source!r} does not match {rule.source!r}"
        # A reminder repeats a match whose `from` already held; the job has not moved since.
        if self.before is not None and not reminder:
            before = _before(event)
            if before not in self.before:
                return Filter.FROM, f"{before} not in [{_states(rule.from_ or ())}]"
        if self.after is not None:
            after = _after(event)
            if after not in self.after:
                return Filter.TO, f"{after} not in [{_states(rule.to or ())}]"
        return None


class RuleBook:
    """The configured rules, with every `when` compiled once."""

    def __init__(self, rules: Sequence[Rule], compile_when: WhenCompiler):
        self._rules: list[_CompiledRule] = []
        for rule in rules:
            predicate = None
            if rule.when is not None:
                try:
                    predicate = compile_when(rule.when)
                except TemplateError as exc:
                    raise TemplateError(
                        f"rule {rule.name!r}: `when` does not compile: {exc}"
                    ) from exc
            self._rules.append(_CompiledRule(rule, predicate))
        self._repeating = [c.rule for c in self._rules if c.rule.repeat is not None]
        # Each event is only tried against the rules for its kind, still in file order.
        self._by_kind: dict[EventKind, list[_CompiledRule]] = {
            kind: [c for c in self._rules if c.rule.on is kind] for kind in EventKind
        }

    @property
    def rules(self) -> list[Rule]:
        return [c.rule for c in self._rules]

    @property
    def repeating(self) -> list[Rule]:
        """The rules with a `repeat`, in file order."""
        return list(self._repeating)

    def evaluate(
        self, event: Event, marks: Mapping[MarkKey, RuleMark], now: datetime
    ) -> list[Decision]:
        """Decide, rule by rule in file order, whether each rule notifies about `event`.

        Only rules for the event's kind (`on`) are tried and listed.
        """
        decisions: list[Decision] = []
        context: dict[str, Any] | None = None
        job_id = event.job.id if event.job is not None else ""
        reminder = event.repeat_of is not None
        for compiled in self._by_kind[event.on]:
            rule = compiled.rule
            if reminder and compiled.name != event.repeat_of:
                continue
            rejected = compiled.static_filter(event, reminder)
            if rejected is not None:
                decisions.append(Decision(rule=rule, outcome=Outcome.FILTERED,
                                          filter=rejected[0], reason=rejected[1]))
                continue
            if compiled.predicate is not None:
                if context is None:
                    context = event_context(event)
                context["rule"] = compiled.name
                decision = _check_when(compiled, context, event)
                if decision is not None:
                    decisions.append(decision)
                    continue
            # Only a throttled rule reads its mark; a reminder was already timed by `repeat`
            # (due_repeats), and throttle is for news.
            throttle = rule.throttle
            mark = (marks.get((compiled.name, event.source, job_id))
                    if throttle and not reminder else None)
            if mark is not None and throttle and now - mark.notified_at < throttle:
                decisions.append(Decision(
                    rule=rule, outcome=Outcome.THROTTLED,
                    reason=f"notified at {mark.notified_at.isoformat()}, throttle {throttle}",
                ))
            else:
                decisions.append(compiled.matched)
            if not compiled.continue_:
                break
        if log.isEnabledFor(logging.DEBUG):
            for decision in decisions:
                log.debug("event %s: %s", event.id, decision.describe())
        return decisions

    def due_repeats(
        self, jobs: Iterable[TrackedJob], marks: Mapping[MarkKey, RuleMark], now: datetime
    ) -> list[tuple[Rule, TrackedJob]]:
        """Jobs still in the state a `repeat` rule notified about, last notified a `repeat` ago."""
        if not self._repeating:
            return []
        due = []
        for job in jobs:
            for rule in self._repeating:
                mark = marks.get((rule.name, job.source, job.id))
                if mark is not None and repeat_due(rule, mark, job, now):
                    due.append((rule, job))
        return due

    def __len__(self) -> int:
        return len(self._rules)


def _check_when(compiled: _CompiledRule, context: Mapping[str, Any], event: Event,
                ) -> Decision | None:
    """None when `when` holds; otherwise the decision that skips the rule."""
    assert compiled.predicate is not None
    rule = compiled.rule
    try:
        result = compiled.predicate(context)
    except Exception as exc:  # a user's expression may fail in any way; skip only this rule
        log.error("rule %s: `when` failed on event %s (%s): %s: %s", rule.name, event.id,
                  event.on, type(exc).__name__, exc)
        return Decision(rule=rule, outcome=Outcome.WHEN_FAILED, filter=Filter.WHEN,
                        reason=f"{type(exc).__name__}: {exc}")
    if not result:
        return Decision(rule=rule, outcome=Outcome.FILTERED, filter=Filter.WHEN,
                        reason=f"{rule.when!r} is false")
    return None


def repeat_due(rule: Rule, mark: RuleMark, job: TrackedJob, now: datetime) -> bool:
    """True when `rule` should remind about `job`, last notified as `mark` says."""
    assert rule.repeat is not None
    if mark.state != str(job.status.state) or now - mark.notified_at < rule.repeat:
        return False
    # The condition the rule was about must still hold, not just the state.
    if rule.on is EventKind.STALLED:
        return job.stalled and not job.vanished
    if rule.on is EventKind.VANISHED:
        return job.vanished
    return not job.vanished


def mark_for(decision: Decision, event: Event, now: datetime) -> RuleMark | None:
    """The rule memory a matched decision leaves, or None if the rule needs none."""
    rule = decision.rule
    if decision.outcome is not Outcome.MATCHED or (rule.throttle is None and rule.repeat is None):
        return None
    job = event.job
    return RuleMark(
        rule=rule.name,
        source=event.source,
        job_id=job.id if job is not None else "",
        notified_at=now,
        state=str(job.state) if job is not None else None,
    )
