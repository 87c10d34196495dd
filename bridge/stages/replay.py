"""Replay: recorded polls through the pipeline's stages, with their clock, sending nothing.

The answer to "what would this config have done?": each recorded poll outcome runs through
the same stages as a live poll (detect, repeat, route, render), with the recorded time as
the clock and an in-memory state in place of the store; what comes out is what would have
been queued for the sinks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bridge.errors import SourceError
from bridge.model import Notification, PollResult
from bridge.stages.base import Batch, Chain
from bridge.stages.memory import Memory


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """One poll as it happened: at `at`, `source` answered `poll` or failed with `error`."""

    source: str
    at: datetime
    poll: PollResult | None = None
    error: SourceError | None = None


async def replay(stages: Chain, recorded: Iterable[Recorded],
                 memory: Memory | None = None) -> list[Batch]:
    """Run each recorded poll through `stages` in order; the batches, one per poll.

    `stages` should have no store (`bridge.stages.stages_for`); `memory` carries the state
    from one poll to the next (a fresh one: as if the bridge started before the first).
    """
    items = list(recorded)
    memory = memory or Memory({item.source for item in items})
    batches = []
    for item in items:
        if item.source not in memory.sources:
            raise KeyError(item.source)
        batch = await stages.run(memory.context(item.source, item.at),
                                 Batch(poll=item.poll, error=item.error))
        memory.apply(item.source, batch)
        batches.append(batch)
    return batches


def notifications(batches: Iterable[Batch]) -> list[Notification]:
    """Everything the batches would have queued, in order."""
    return [n for batch in batches for n in batch.notifications]
