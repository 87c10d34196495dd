"""Stage repeat: reminder events for jobs still in the state a `repeat` rule notified about.

Detection's layer, not the rules': a reminder is an event ("job X is still failed"), built
here from the job record and the rule memory; the route stage then lets only its own rule
evaluate it (`Event.repeat_of`, see bridge.rules). Runs after detect, on polls and pushes
(not on a failed poll: nothing was observed), over the jobs as they are after this batch.

The reminder's id comes from the rule, the job, the job record's version and the time of
the notification it repeats, never from `now`: a replay of the same poll, or a second
instance polling the same source, builds the same id, and the outbox keeps one.

Cost: one look at each rule mark of the source, not at each tracked job; a source of
100,000 jobs with a handful of notified ones pays for the handful.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bridge.config.schema import Rule
from bridge.model import Event, TrackedJob, event_id
from bridge.rules import RuleBook, repeat_due
from bridge.stages.base import Batch, Context
from bridge.store.base import RuleMark


def reminder(rule: Rule, job: TrackedJob, mark: RuleMark, now: datetime) -> Event:
    """The reminder `rule` sends about `job`, which it last notified as `mark` records."""
    status = job.status
    return Event(
        id=event_id(job.source, status.id, "repeat", rule.name, job.version,
                    mark.notified_at.isoformat()),
        on=rule.on,
        source=job.source,
        at=now,
        job=status,
        previous=status,
        to_state=status.state,
        first_seen=job.first_seen,
        duration=(now - job.started_at) if job.started_at else None,
        reason=f"repeat: still {status.state} (rule {rule.name})",
        repeat_of=rule.name,
    )


class Repeat:
    name = "repeat"

    def __init__(self, rulebook: RuleBook):
        rules = rulebook.repeating
        self._rules = {rule.name: rule for rule in rules}
        self._order = {rule.name: index for index, rule in enumerate(rules)}

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        if not self._rules or batch.poll is None:
            return batch
        due = self.due(ctx, batch)
        if not due:
            return batch
        return replace(batch, events=(*batch.events, *due))

    def due(self, ctx: Context, batch: Batch) -> list[Event]:
        """The reminders due now, by job id, then rule in file order (so replays agree)."""
        rules = self._rules
        upserted = {job.id: job for job in batch.upserts} if batch.upserts else {}
        removed = frozenset(batch.removals)
        found: list[tuple[str, int, Event]] = []
        for (rule_name, source, job_id), mark in ctx.marks.items():
            rule = rules.get(rule_name)
            if rule is None or source != ctx.source or job_id in removed:
                continue
            job = upserted.get(job_id) or ctx.jobs.get(job_id)
            if job is not None and repeat_due(rule, mark, job, ctx.now):
                found.append((job_id, self._order[rule_name], reminder(rule, job, mark, ctx.now)))
        found.sort(key=lambda item: item[:2])
        return [event for _, _, event in found]
