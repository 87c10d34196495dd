"""The state store's tables and their ordered migrations, for every SQL backend.

Migrations are append-only: never edit one that has shipped, add the next. Each backend
applies the ones above the `schema_version` it finds, in one transaction, so a half-applied
migration never exists. Statements are written once, with `{seq_pk}` standing for the
dialect's auto-incrementing primary key.

Timestamps are integer microseconds since the Unix epoch (UTC): exact round trips, cheap
range queries, and the same type in SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_SEQ_PK: dict[Dialect, str] = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}
# The `version` a job's JSON `data` holds, as an integer (to backfill the version column).
_JSON_VERSION: dict[Dialect, str] = {
    "sqlite": "COALESCE(CAST(json_extract(data, '$.version') AS INTEGER), 0)",
    "postgresql": "COALESCE(CAST(CAST(data AS jsonb) ->> 'version' AS BIGINT), 0)",
}

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"

# One tuple of statements per version; index 0 is version 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            source TEXT NOT NULL,
            job_id TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_us BIGINT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (source, job_id))""",
        "CREATE INDEX jobs_updated ON jobs (updated_us)",
        "CREATE TABLE health (source TEXT PRIMARY KEY, data TEXT NOT NULL)",
        """CREATE TABLE events (
            seq {seq_pk},
            id TEXT NOT NULL,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            at_us BIGINT NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX events_source ON events (source, seq)",
        """CREATE TABLE watches (
            source TEXT NOT NULL,
            job_id TEXT NOT NULL,
            added_us BIGINT NOT NULL,
            PRIMARY KEY (source, job_id))""",
        """CREATE TABLE rule_marks (
            rule TEXT NOT NULL,
            source TEXT NOT NULL,
            job_id TEXT NOT NULL,
            notified_us BIGINT NOT NULL,
            state TEXT,
            PRIMARY KEY (rule, source, job_id))""",
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            sink TEXT NOT NULL,
            source TEXT NOT NULL,
            job_id TEXT,
            status TEXT NOT NULL,
            created_us BIGINT NOT NULL,
            next_attempt_us BIGINT,
            leased INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            finished_us BIGINT,
            data TEXT NOT NULL)""",
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_us)",
        "CREATE INDEX outbox_finished ON outbox (status, finished_us)",
        """CREATE TABLE message_refs (
            sink TEXT NOT NULL,
            source TEXT NOT NULL,
            job_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (sink, source, job_id))""",
    ),
    (
        # Claims look for an earlier pending row of the same job before taking a later one.
        "CREATE INDEX outbox_job ON outbox (sink, source, job_id, status)",
    ),
    (
        # Urgency (0 high, 1 normal, 2 low): claims take the most urgent due rows first.
        "ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 1",
        "CREATE INDEX outbox_due_priority ON outbox (status, next_attempt_us, priority)",
    ),
    (
        # Scale-out (several instances on one database). A lease per source and per sink:
        # `owner` holds it until `until_us`; `previous` is who held it before it last
        # changed hands ('' after a voluntary release), so a taker can tell a takeover;
        # `since_us` is when the owner took it.
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            until_us BIGINT NOT NULL,
            since_us BIGINT NOT NULL,
            previous TEXT NOT NULL DEFAULT '')""",
        # The job record's version as a column: commits compare-and-set on it.
        "ALTER TABLE jobs ADD COLUMN version BIGINT NOT NULL DEFAULT 0",
        "UPDATE jobs SET version = {json_version}",
        # Accepted push webhook-ids, shared by every instance, kept while they could verify.
        """CREATE TABLE push_seen (
            source TEXT NOT NULL,
            message_id TEXT NOT NULL,
            expires_us BIGINT NOT NULL,
            PRIMARY KEY (source, message_id))""",
        "CREATE INDEX push_seen_expiry ON push_seen (expires_us)",
    ),
    (
        # Silences (bridge.silences, bridge.store.silences): shared by every instance.
        """CREATE TABLE silences (
            id TEXT PRIMARY KEY,
            starts_us BIGINT NOT NULL,
            ends_us BIGINT,
            until_resolved INTEGER NOT NULL DEFAULT 0,
            ended TEXT,
            created_us BIGINT NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX silences_ends ON silences (ends_us)",
    ),
    (
        # Slack button presses (bridge.store.actions): who did what to which job.
        """CREATE TABLE actions (
            seq {seq_pk},
            at_us BIGINT NOT NULL,
            sink TEXT NOT NULL,
            source TEXT NOT NULL,
            job_id TEXT NOT NULL,
            action TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            note TEXT NOT NULL)""",
        "CREATE INDEX actions_job ON actions (source, job_id, seq)",
    ),
    (
        # Claims read pending rows in this order and stop after a batch (claim_sql.CLAIM_DUE).
        "CREATE INDEX outbox_claim ON outbox (status, priority, created_us, id)",
    ),
    (
        # Grouping (bridge.groups): one row per open group, one per event in it. At most one
        # open group per (rule, key); `due_us` is when it is flushed (or closed) next.
        """CREATE TABLE groups (
            id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            group_key TEXT NOT NULL,
            first_us BIGINT NOT NULL,
            due_us BIGINT NOT NULL,
            flushes INTEGER NOT NULL DEFAULT 0)""",
        "CREATE UNIQUE INDEX groups_open ON groups (rule, group_key)",
        "CREATE INDEX groups_due ON groups (due_us)",
        """CREATE TABLE group_events (
            group_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            added_us BIGINT NOT NULL,
            flushed INTEGER NOT NULL DEFAULT 0,
            data TEXT NOT NULL,
            PRIMARY KEY (group_id, event_id))""",
    ),
    (
        # Poll outcomes per source and 5-minute bucket (bridge.store.poll_buckets), for the
        # dashboard's polls/errors chart: every instance adds its polls to the same rows.
        """CREATE TABLE poll_buckets (
            source TEXT NOT NULL,
            bucket_us BIGINT NOT NULL,
            ok INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            PRIMARY KEY (source, bucket_us))""",
        "CREATE INDEX poll_buckets_age ON poll_buckets (bucket_us)",
    ),
    (
        # Coalescing (bridge.store.coalesce): 1 on a row that a newer row of the same message
        # may take the place of while it waits unsent (0 on rows queued before, kept as they
        # are); how many waiting rows a row took the place of.
        "ALTER TABLE outbox ADD COLUMN mergeable INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE outbox ADD COLUMN replaced INTEGER NOT NULL DEFAULT 0",
    ),
)

LATEST = len(MIGRATIONS)


def pending(current: int, dialect: Dialect) -> Sequence[tuple[int, tuple[str, ...]]]:
    """The migrations to apply over `current`, as (version, statements) in order."""
    return [
        (version, tuple(s.format(seq_pk=_SEQ_PK[dialect], json_version=_JSON_VERSION[dialect])
                        for s in statements))
        for version, statements in enumerate(MIGRATIONS, start=1)
        if version > current
    ]


def too_new(current: int, where: str) -> str:
    return (
        f"state store {where} has schema version {current}, newer than this bridge knows "
        f"({LATEST}): upgrade bridge, or point `state` at another database"
    )
