"""SQL for several instances on one store: leases, the commit fence, compare-and-set on
job records, the shared push replay guard. Written once for SQLite and PostgreSQL (`?`
placeholders, `INSERT ... ON CONFLICT ... DO UPDATE ... WHERE`, `RETURNING`), so SQLite
runs the same statements (and the contract tests) although one process owns it.

Why an atomic upsert rather than `SELECT ... FOR UPDATE SKIP LOCKED` for leases: a lease
is one row and one statement decides it, on both engines; PostgreSQL locks the row for the
statement, so two instances racing for an expired lease serialise and exactly one gets a
row back. SKIP LOCKED stays where many rows are handed out (outbox claims).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.store.base import Lease

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lease_from(row: Sequence[Any]) -> Lease:
    name, owner, until_us, since_us, previous = row
    return Lease(name=name, owner=owner, until=_at(until_us), since=_at(since_us),
                 previous=previous or "")


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))

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

# Start-up releases only claims that expired (live instances are sending the others); a
# sink's delivery lease changing hands releases that sink's claims (its sender died).
RELEASE_EXPIRED = " AND next_attempt_us <= ?"
RELEASE_SINK = " AND sink = ?"
RENEW_CLAIM = (
    "UPDATE outbox SET next_attempt_us = ? WHERE id = ? AND status = 'pending' AND leased = 1"
)

# --- leases, push replay guard ---------------------------------------------------------------

# One atomic compare-and-set: insert a free lease, or take it over when it is expired or
# already the owner's (a renewal); otherwise change nothing and return no row.
ACQUIRE_LEASE = (
    "INSERT INTO leases (name, owner, until_us, since_us, previous) VALUES (?, ?, ?, ?, '') "
    "ON CONFLICT (name) DO UPDATE SET until_us = excluded.until_us, owner = excluded.owner, "
    "previous = CASE WHEN leases.owner = excluded.owner THEN leases.previous "
    "ELSE leases.owner END, "
    "since_us = CASE WHEN leases.owner = excluded.owner THEN leases.since_us "
    "ELSE excluded.since_us END "
    "WHERE leases.owner = excluded.owner OR leases.until_us < ? "
    "RETURNING name, owner, until_us, since_us, previous"
)
RELEASE_LEASE = "UPDATE leases SET owner = '', until_us = 0 WHERE name = ? AND owner = ?"
LIST_LEASES = "SELECT name, owner, until_us, since_us, previous FROM leases ORDER BY name"
# A webhook-id is new, or remembered but past its expiry (then remembered afresh).
CLAIM_MESSAGE = (
    "INSERT INTO push_seen (source, message_id, expires_us) VALUES (?, ?, ?) "
    "ON CONFLICT (source, message_id) DO UPDATE SET expires_us = excluded.expires_us "
    "WHERE push_seen.expires_us < ?"
)
FORGET_MESSAGE = "DELETE FROM push_seen WHERE source = ? AND message_id = ?"
PRUNE_MESSAGES = "DELETE FROM push_seen WHERE expires_us < ?"
