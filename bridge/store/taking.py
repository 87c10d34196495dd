"""Taking new outbox rows at once: the rows a commit queues for a sink this instance sends
to itself are leased in the commit's own transaction and handed to the sink's worker in
memory (`DeliveryWorkers.hand_over`), so they skip the claim's transaction and its wait.

Nothing is weakened: a taken row is committed, leased, before the poll or push is answered;
a crash leaves it leased, and it is sent again after its lease (or at the next start) with
its webhook-id, like any claimed row. A job's order holds because a row is taken only when
it is its job's only pending row for the sink: behind an earlier one (waiting for a retry,
or claimed) it takes the claim path, which sends them in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from bridge.model import Delivery
from bridge.store.base import PollCommit, TakeNew
from bridge.store.cas import Returning
from bridge.store.sql import IDS_PER_QUERY, queued
from bridge.store.times import from_us, to_us

# `next_attempt_us = ?` and `attempts = 0`: the row this commit inserted, not an older one
# with the same id that the insert left alone (ON CONFLICT DO NOTHING) and may be waiting
# for its retry.
_TAKE = (
    "UPDATE outbox SET next_attempt_us = ?, leased = 1 WHERE id IN ({ids}) "
    "AND status = 'pending' AND leased = 0 AND attempts = 0 AND next_attempt_us = ? "
    "AND NOT EXISTS (SELECT 1 FROM outbox b WHERE b.sink = outbox.sink "
    "AND b.source = outbox.source AND b.job_id = outbox.job_id AND b.status = 'pending' "
    "AND b.id <> outbox.id) "
    "RETURNING id"
)


def take_steps(commits: Sequence[PollCommit], take: TakeNew | None) -> Iterator[Returning]:
    """The statements that lease the rows `commits` queue for `take`'s sinks; each returns
    the ids it leased. Run after the commits' own steps, in their transaction."""
    if take is None:
        return
    until_us = to_us(take.until)
    for commit in commits:
        if commit.at is None:
            continue  # its rows' times are only known inside the commit: the claim takes them
        at_us = to_us(commit.at)
        ids = [n.delivery_id for _, n in queued(commit, at_us) if n.sink in take.sinks]
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start:start + IDS_PER_QUERY]
            query = _TAKE.format(ids=", ".join("?" * len(chunk)))
            yield Returning(query, (until_us, *chunk, at_us))


def taken(commits: Sequence[PollCommit], take: TakeNew | None, ids: set[str]
          ) -> list[Delivery]:
    """The leased rows `ids` as deliveries, oldest first, from the notifications in memory
    (nothing is read back or decoded)."""
    if take is None or not ids:
        return []
    deliveries = []
    for commit in commits:
        if commit.at is None:
            continue
        for created_us, n in queued(commit, to_us(commit.at)):
            if n.delivery_id in ids:
                ids.discard(n.delivery_id)  # a repeated id was inserted once, the first time
                deliveries.append(Delivery(id=n.delivery_id, notification=n,
                                           created_at=from_us(created_us) or commit.at,
                                           next_attempt_at=take.until))
    return deliveries
