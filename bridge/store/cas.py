"""The compare-and-set steps of a commit on a shared store (several instances).

A commit computed from state another instance has changed since must write nothing: the
fence (the source's lease still ours), then every job record and every rule mark is
written only if the store still holds what the poll read (`UPDATE ... WHERE version =
:seen`, an insert only where nothing was). Each such step is `Guarded`: the backend runs it
and `check_guard` raises StaleCommit (rolling the transaction back) when fewer rows changed
than it has. With `seen_versions` None (one process owns the store) writes stay blind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.model import to_json
from bridge.store.base import PollCommit, StaleCommit
from bridge.store.times import to_us

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Guarded:
    """A commit step whose rows must each change exactly one row; if fewer did, the state
    the commit was computed from is stale and the transaction is rolled back (StaleCommit)."""

    query: str
    rows: Sequence[Row]
    what: str


@dataclass(frozen=True, slots=True)
class Returning:
    """A commit step of one statement whose rows `_write_steps` gives back to the caller
    (the outbox rows a commit leased for this instance to send at once: bridge.store.taking)."""

    query: str
    params: Row


Step = tuple[str, Iterable[Row]] | Guarded | Returning

# Compare-and-set on the job record: a job the poll saw absent is inserted only if still
# absent; one it saw at version N is updated only if still at N.
INSERT_NEW_JOB = (
    "INSERT INTO jobs (source, job_id, state, updated_us, data, version) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, job_id) DO NOTHING"
)
UPDATE_SEEN_JOB = (
    "UPDATE jobs SET state = ?, updated_us = ?, data = ?, version = ? "
    "WHERE source = ? AND job_id = ? AND version = ?"
)
# The fence: touching the lease row (and, in PostgreSQL, locking it until the commit ends,
# so a takeover waits for this commit and then reads what it wrote).
FENCE = "UPDATE leases SET until_us = until_us WHERE name = ? AND owner = ?"
INSERT_NEW_MARK = (
    "INSERT INTO rule_marks (rule, source, job_id, notified_us, state) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (rule, source, job_id) DO NOTHING"
)
UPDATE_SEEN_MARK = (
    "UPDATE rule_marks SET notified_us = ?, state = ? "
    "WHERE rule = ? AND source = ? AND job_id = ? AND notified_us = ?"
)


def check_guard(step: Guarded, changed: int) -> None:
    """Raise StaleCommit when a guarded step changed fewer rows than it has (rolls back)."""
    if changed < len(step.rows):
        raise StaleCommit(f"commit refused, state is stale: {step.what}")


def fence_step(fence: tuple[str, str]) -> Guarded:
    return Guarded(FENCE, [fence], f"lease {fence[0]} is no longer held")


def job_steps(commit: PollCommit, at_us: int, upsert: str) -> Iterator[Step]:
    """Job upserts: blind (no `seen_versions`), else compare-and-set on their versions."""
    source = commit.source
    if commit.seen_versions is None:
        yield (
            upsert,
            ((source, j.id, str(j.status.state), at_us, to_json(j), j.version)
             for j in commit.upserts),
        )
        return
    latest = {job.id: job for job in commit.upserts}  # one write per job, the last one
    seen = commit.seen_versions
    fresh = [(source, j.id, str(j.status.state), at_us, to_json(j), j.version)
             for j in latest.values() if j.id not in seen]
    changed = [(str(j.status.state), at_us, to_json(j), j.version, source, j.id, seen[j.id])
               for j in latest.values() if j.id in seen]
    yield Guarded(INSERT_NEW_JOB, fresh, "a job this poll saw as new was stored meanwhile")
    yield Guarded(UPDATE_SEEN_JOB, changed, "a job this poll read was changed meanwhile")


def mark_steps(commit: PollCommit, upsert: str) -> Iterator[Step]:
    """Rule marks: blind, or compare-and-set on when the rule last notified (`seen_marks`):
    two instances that both let a throttled rule through cannot both commit."""
    if commit.seen_marks is None:
        yield (
            upsert,
            ((m.rule, m.source, m.job_id, to_us(m.notified_at), m.state)
             for m in commit.rule_marks),
        )
        return
    latest = {(m.rule, m.source, m.job_id): m for m in commit.rule_marks}
    seen = commit.seen_marks
    fresh = [(m.rule, m.source, m.job_id, to_us(m.notified_at), m.state)
             for key, m in latest.items() if key not in seen]
    changed = [(to_us(m.notified_at), m.state, m.rule, m.source, m.job_id, seen[key])
               for key, m in latest.items() if key in seen]
    yield Guarded(INSERT_NEW_MARK, fresh, "a rule notified about a job meanwhile")
    yield Guarded(UPDATE_SEEN_MARK, changed, "a rule's memory of a job changed meanwhile")
