"""Stage enqueue: the batch -> the store, in one transaction (the only stage with I/O).

Job records, health, events, outbox rows and rule marks are written by one `commit_poll`,
so a crash keeps all of a poll or none of it (at-least-once, contract section 7). Runs on
every batch, even an empty one: health's `last_poll_at` moves with every poll. On a shared
store the commit compares-and-sets each job against the version the batch was computed
from, and each rule mark against the one it read, and is fenced by the source's lease: a
stale batch raises StaleCommit and writes nothing. Rows for a sink this instance sends to
are leased in the same transaction and handed to its worker at once (bridge.store.taking).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from bridge.model import Delivery
from bridge.stages.base import Batch, Context
from bridge.store.base import PollCommit, Store, TakeNew
from bridge.store.times import to_us


class Handoff(Protocol):
    """Who sends the outbox rows a commit queued (bridge.deliver.DeliveryWorkers): which
    sinks' rows it takes at once, then, once committed, the rows taken and the sinks whose
    rows wait in the outbox for its claim."""

    def takes_new(self) -> TakeNew | None: ...

    def hand_over(self, deliveries: Sequence[Delivery], waiting: Collection[str]) -> None: ...


class Enqueue:
    name = "enqueue"

    def __init__(self, store: Store):
        self._store = store
        # Set once the delivery workers run; until then every row waits for their claim.
        self.handoff: Handoff | None = None

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        await self._store.commit_poll(commit_of(ctx, batch))
        return batch

    async def run_group(self, commits: Sequence[PollCommit]) -> None:
        """Commit many batches (each made by `commit_of`), in order, in one transaction;
        the rows the handoff takes are leased in it and handed over after it."""
        handoff = self.handoff
        take = handoff.takes_new() if handoff is not None else None
        taken = await self._store.commit_polls(commits, take)
        if handoff is None:
            return
        ids = {d.id for d in taken}
        waiting = {n.sink for c in commits for n in c.notifications
                   if n.silenced is None and n.delivery_id not in ids}
        if taken or waiting:
            handoff.hand_over(taken, waiting)


def commit_of(ctx: Context, batch: Batch) -> PollCommit:
    """What the store writes for one batch. Made before the batch is applied to the memory
    `ctx` reads: the versions it compares-and-sets against are the ones the batch saw."""
    seen = seen_marks = None
    if ctx.compare_and_set:
        jobs, marks = ctx.jobs, ctx.marks
        seen = {job.id: jobs[job.id].version for job in batch.upserts if job.id in jobs}
        seen_marks = {key: to_us(marks[key].notified_at) for key in
                      ((m.rule, m.source, m.job_id) for m in batch.marks) if key in marks}
    return PollCommit(
        source=ctx.source,
        upserts=batch.upserts,
        removals=batch.removals,
        health=batch.health,
        events=batch.events,
        notifications=(*batch.notifications, *batch.silenced_notifications),
        rule_marks=batch.marks,
        finished_watches=batch.finished_watches,
        ended_silences=batch.ended_silences,
        grouped=batch.grouped,
        at=ctx.now,
        seen_versions=seen,
        seen_marks=seen_marks,
        fence=ctx.fence,
    )
