"""Stage route: events -> the rules that notify about them (bridge.rules decides).

Each event is tried against the rules in file order (first match wins unless `continue`);
a match becomes a `Match` with the rule memory it will leave, every other decision a `Skip`
with its named reason (throttled, filtered by `to`, `when` failed, ...). Marks made earlier
in the batch count for throttle, but join the shared memory only once the batch is
committed. A match whose templates all fail leaves no mark (the render stage drops it), so
a later event in the same batch could still be let through; it would fail the same way.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import cast

from bridge.model import Event, EventKind
from bridge.rules import Outcome, RuleBook, mark_for
from bridge.stages.base import Batch, Context, MarkKey, Match, Skip
from bridge.store.base import RuleMark

log = logging.getLogger(__name__)


class Route:
    name = "route"

    def __init__(self, rulebook: RuleBook):
        self._rulebook = rulebook

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        if not batch.events:
            return batch
        evaluate = self._rulebook.evaluate
        now = ctx.now
        matches: list[Match] = []
        skipped: list[Skip] = []
        made: dict[MarkKey, RuleMark] = {}
        # ChainMap writes only to its first map; the shared memory is only read.
        shared = cast("MutableMapping[MarkKey, RuleMark]", ctx.marks)
        memory: Mapping[MarkKey, RuleMark] = ChainMap(made, shared) if shared else made
        # One line per event at debug only: at info it was ~4% of a push's CPU, and
        # `bridge_events_total` counts them. Asked once per batch: describing 1,000 events
        # nobody logs costs more than routing.
        logged = log.isEnabledFor(logging.DEBUG)
        for event in batch.events:
            if logged:
                log.debug("event %s %s %s", event.on, event.source, _describe(event))
            for decision in evaluate(event, memory, now):
                if decision.outcome is not Outcome.MATCHED:
                    skipped.append(Skip(event=event, decision=decision))
                    continue
                mark = mark_for(decision, event, now)
                if mark is not None:
                    made[(mark.rule, mark.source, mark.job_id)] = mark
                matches.append(Match(event=event, rule=decision.rule, mark=mark))
        return replace(batch, matches=(*batch.matches, *matches),
                       skipped=(*batch.skipped, *skipped))


def _describe(event: Event) -> str:
    if event.on is EventKind.TRANSITION and event.job:
        return f"{event.job.id}: {event.from_state} -> {event.to_state}"
    if event.job:
        progress = f" {event.job.progress:.0f}%" if event.job.progress is not None else ""
        return f"{event.job.id}: {event.job.state}{progress}"
    return event.reason or ""
