"""SQL for several instances on one store: leases, claim release and renewal, the shared
push replay guard (the commit's compare-and-set steps are in `cas`). Written once for
SQLite and PostgreSQL (`?` placeholders, `INSERT ... ON CONFLICT ... DO UPDATE ... WHERE`,
`RETURNING`), so SQLite runs the same statements (and the contract tests) although one
process owns it.

Why an atomic upsert rather than `SELECT ... FOR UPDATE SKIP LOCKED` for leases: a lease
is one row and one statement decides it, on both engines; PostgreSQL locks the row for the
statement, so two instances racing for an expired lease serialise and exactly one gets a
row back. SKIP LOCKED stays where many rows are handed out (outbox claims).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store.base import Lease
from bridge.store.times import EPOCH, from_us


def lease_from(row: Sequence[Any]) -> Lease:
    name, owner, until_us, since_us, previous = row
    return Lease(name=name, owner=owner, until=from_us(int(until_us)) or EPOCH,
                 since=from_us(int(since_us)) or EPOCH, previous=previous or "")


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
