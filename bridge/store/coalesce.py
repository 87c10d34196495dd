"""Coalescing in the outbox: a newer row of a message takes the place of one waiting unsent.

In Slack `update` mode a job has one message, and each notification of the job posts it
(the first) or edits it. While a job's rows wait in the outbox behind the channel's budget,
sending each of them would post the job's "started" state and then edit it into
"succeeded". So when a row that edits its job's message (`Notification.coalesce`) is
queued, the earlier rows of the same message (sink, source, job) that are still waiting
unsent (pending, not claimed, never attempted) are marked `superseded`, in the same
transaction: the newer row goes out in their place, as one `chat.postMessage` showing the
latest state when the message was not posted yet. The newer row counts them (`replaced`),
so a failure that took the place of the post still gets its thread reply.

Never superseded: a terminal row (succeeded, failed, cancelled: its state is never
coalesced away), a digest's thread reply, a row queued before this existed, and any row
that was claimed or attempted (it may be on its way to Slack; the sender coalesces what it
holds, `bridge.sinks.slack_sender`). Those rows are stored with `mergeable = 0`. A job's
rows still reach the sink in order: only rows are dropped, never reordered. A superseded
row is kept, like a delivered one, for `DELIVERED_KEEP` (dashboard, `bridge outbox`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bridge.model import Notification
from bridge.store.cas import Step

# The rows a newer row `n` of the same message may take the place of.
_WAITING = (
    "w.sink = n.sink AND w.source = n.source AND w.job_id = n.job_id "
    "AND w.status = 'pending' AND w.mergeable = 1 AND w.leased = 0 AND w.attempts = 0 "
    "AND w.created_us < n.created_us"
)
# First count them on the newer row (while they are still pending), then supersede them.
# `n` is the newer row as inserted: a row that already existed (not inserted again, maybe
# delivered long ago) is not pending and takes nobody's place.
COUNT_REPLACED = (
    "UPDATE outbox SET replaced = replaced + (SELECT COUNT(*) FROM outbox w, outbox n "
    f"WHERE n.id = ? AND n.status = 'pending' AND {_WAITING}) WHERE id = ?"
)
# The row's own conditions are repeated outside the subquery: PostgreSQL re-checks those
# (and only those) on a row that a concurrent claim changed meanwhile, so a row another
# instance just claimed is left to it.
SUPERSEDE = (
    "UPDATE outbox SET status = 'superseded', finished_us = ?, next_attempt_us = NULL, "
    "last_error = ? WHERE status = 'pending' AND leased = 0 AND attempts = 0 AND id IN "
    f"(SELECT w.id FROM outbox w, outbox n WHERE n.id = ? AND n.status = 'pending' AND {_WAITING})"
)


def mergeable(n: Notification) -> int:
    """1 if a newer row of the same message may take this row's place while it waits."""
    return int(n.coalesce and n.job_id is not None and not n.terminal and not n.thread_reply)


def supersede_steps(notifications: Iterable[Notification], at_us: int) -> Iterator[Step]:
    """After a commit's rows are inserted: each row that edits its job's message takes the
    place of the earlier ones still waiting, one row after another in queue order (a row
    queued in the same commit is superseded by the next one of its job)."""
    for n in notifications:
        if not n.coalesce or n.job_id is None or n.thread_reply or n.silenced is not None:
            continue
        note = (f"superseded by {n.delivery_id}: a newer notification of the same message "
                "took its place before it was sent")
        yield COUNT_REPLACED, [(n.delivery_id, n.delivery_id)]
        yield SUPERSEDE, [(at_us, note, n.delivery_id)]
