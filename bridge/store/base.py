"""The state store interface: job state, events, watches, rule memory and the outbox.

One interface, several backends (SQLite embedded, PostgreSQL for several instances). The
pipeline writes everything one poll produced with a single `commit_poll`, in one
transaction, so a crash either keeps all of it (new job state, events, outbox rows) or none:
that is the at-least-once guarantee of contract section 7.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from bridge.errors import StoreError
from bridge.groups.model import GroupEntry, GroupFlush, OpenGroup
from bridge.model import Delivery, DeliveryStatus, Event, Notification, SourceHealth, TrackedJob
from bridge.silences import Silence

if TYPE_CHECKING:  # bridge.store.actions reads the SQL helpers, which import this module
    from bridge.store.actions import ActionRecord
    from bridge.store.poll_buckets import PollBucket


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMark:
    """When a rule last notified about a job: the memory behind `throttle` and `repeat`."""

    rule: str
    source: str
    job_id: str
    notified_at: datetime
    # The job's state when it was notified; `repeat` re-notifies while it stays there.
    state: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeNew:
    """The sinks whose new outbox rows this instance sends at once (bridge.store.taking):
    a commit leases their rows until `until` and returns them."""

    sinks: frozenset[str]
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PollCommit:
    """Everything one poll (or one pushed observation) changed, written atomically."""

    source: str
    upserts: Sequence[TrackedJob] = ()
    removals: Sequence[str] = ()
    health: SourceHealth | None = None
    events: Sequence[Event] = ()
    notifications: Sequence[Notification] = ()
    rule_marks: Sequence[RuleMark] = ()
    # Watched ids (single-id APIs) that reached a terminal state: stop polling them.
    finished_watches: Sequence[str] = ()
    # until_resolved silences whose job succeeded in this poll: they end at `at`.
    ended_silences: Sequence[str] = ()
    # Events of rules with `group_by`, joining (or opening) their groups.
    grouped: Sequence[GroupEntry] = ()
    at: datetime | None = None
    # Compare-and-set (None: blind upserts, one process owns the store): the stored version
    # of each job as the poll read it (absent: the job was not stored). A job whose stored
    # version differs was written by someone else meanwhile: the whole commit is refused
    # (StaleCommit) and nothing is written.
    seen_versions: Mapping[str, int] | None = None
    # Likewise the rule marks as the poll read them: (rule, source, job id) -> when the rule
    # notified, in microseconds since the epoch (absent: no mark). None: blind writes.
    seen_marks: Mapping[tuple[str, str, str], int] | None = None
    # (lease name, owner): commit only while `owner` still holds that lease (a fence).
    fence: tuple[str, str] | None = None


class StaleCommit(StoreError):
    """A commit was refused because the state it was computed from is no longer current
    (another instance wrote the job, or took the source's lease). Nothing was written; the
    caller reloads the state from the store and emits nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """Who holds a named lease (`source:NAME`, `sink:NAME`) and until when."""

    name: str
    owner: str
    until: datetime
    # When `owner` took it (a renewal keeps it).
    since: datetime
    # Who held it before it last changed hands ('' when released, or never held).
    previous: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRef:
    """Where a sink's message about one job lives (Slack channel and `ts`)."""

    channel: str
    ts: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    pending: int = 0
    dead: int = 0
    delivered: int = 0
    # Rows a newer row of the same message took the place of (bridge.store.coalesce).
    superseded: int = 0
    oldest_pending: datetime | None = None
    per_sink_pending: dict[str, int] = field(default_factory=dict)


class Store(Protocol):
    """What every state store backend provides. All methods are coroutines."""

    # True when several bridge instances may share the store (PostgreSQL): they then divide
    # sources and sinks between them with leases. False (SQLite): one process owns all.
    shared: bool

    async def open(self) -> None:
        """Connect, create or migrate the schema. Raises StoreError with a clear reason."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the store answers (for /readyz)."""

    # --- jobs, health, events -------------------------------------------------------------

    async def load_jobs(
        self, source: str, ids: Collection[str] | None = None
    ) -> dict[str, TrackedJob]:
        """A source's job records; with `ids`, only those jobs' (a push on a shared store
        reads back the jobs it names, not all of them)."""

    async def load_health(self, source: str) -> SourceHealth | None: ...

    async def commit_poll(self, commit: PollCommit) -> None:
        """Write one poll's results in a single transaction. A queued notification with
        `coalesce` marks the earlier rows of its message (sink, source, job) that still wait
        unsent `superseded`, in the same transaction (bridge.store.coalesce); so does a
        group's flush (`flush_group`)."""

    async def commit_polls(
        self, commits: Sequence[PollCommit], take: TakeNew | None = None
    ) -> list[Delivery]:
        """Write many polls' results, in order, in a single transaction (group commit):
        all of them or none. With `take`, the rows queued for its sinks that are their job's
        only pending row for the sink are leased in the same transaction, and returned
        (oldest first) for the caller to send at once."""

    async def list_jobs(
        self, source: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[TrackedJob]: ...

    async def list_health(self) -> list[SourceHealth]: ...

    async def recent_events(
        self, limit: int = 100, before: int | None = None, source: str | None = None
    ) -> list[tuple[int, Event]]:
        """Newest first, as (sequence number, event); page with `before=<seq>`."""

    # --- watches (job ids tracked on single-id APIs) ---------------------------------------

    async def add_watch(self, source: str, job_id: str) -> bool:
        """Track a job id; False if it was already tracked."""

    async def remove_watch(self, source: str, job_id: str) -> bool: ...

    async def list_watches(self, source: str) -> list[str]: ...

    # --- rule memory ------------------------------------------------------------------------

    async def load_rule_marks(
        self, source: str | None = None, job_ids: Collection[str] | None = None
    ) -> list[RuleMark]:
        """Every rule mark, or those of one source's jobs (with `job_ids`, of those jobs)."""

    # --- leases (several instances on one store) ---------------------------------------------

    async def acquire_lease(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> Lease | None:
        """Take or renew lease `name` for `owner` until `now + ttl`, in one atomic
        compare-and-set: it succeeds when the lease is free, expired, or already `owner`'s.
        None while another owner holds it unexpired."""

    async def release_lease(self, name: str, owner: str) -> bool:
        """Give a lease up at once (if `owner` holds it), so another instance can take it."""

    async def list_leases(self) -> list[Lease]: ...

    # --- push replay guard ---------------------------------------------------------------------

    async def claim_message(
        self, source: str, message_id: str, expires: datetime, now: datetime
    ) -> bool:
        """Remember a pushed webhook-id until `expires`; False if it is remembered already
        (a replay, to refuse), whichever instance accepted it first."""

    async def forget_message(self, source: str, message_id: str) -> None:
        """Forget a claimed webhook-id (acting on it failed: the sender's retry is welcome)."""

    # --- outbox -----------------------------------------------------------------------------

    async def claim_due(
        self, now: datetime, limit: int, lease: timedelta, sink: str | None = None
    ) -> list[Delivery]:
        """Pending deliveries due by `now` (of one sink, if given): the most urgent jobs
        first (a job's rows in order), oldest first within one urgency; returned oldest
        first, hidden from other claimers for `lease` so two workers (or instances) never
        send the same row."""

    async def mark_delivered(self, delivery_id: str, at: datetime) -> None: ...

    async def mark_delivered_many(self, delivered: Sequence[tuple[str, datetime]]) -> None:
        """Record many (delivery id, when) as delivered in one transaction: a commit per row
        would cap delivery at the disk's fsync rate."""

    async def mark_retry(
        self, delivery_id: str, error: str, next_attempt_at: datetime
    ) -> None:
        """Count a failed attempt and schedule the next one."""

    async def mark_dead(self, delivery_id: str, error: str, at: datetime) -> None:
        """Count a failed attempt and dead-letter the delivery with its last error."""

    async def release_claims(
        self, *, expired_by: datetime | None = None, sink: str | None = None
    ) -> int:
        """Make claimed-but-unfinished deliveries due again (after a crash): all of them, or
        only those whose claim expired by `expired_by` (other live instances are sending the
        rest), or only one sink's (its delivery lease changed hands). Returns how many."""

    async def renew_claims(self, delivery_ids: Sequence[str], until: datetime) -> None:
        """Extend the claim on deliveries still being sent (a long rate-limited batch), so
        they are not claimed again meanwhile."""

    async def release(self, delivery_ids: Sequence[str], at: datetime) -> None:
        """Give back claimed deliveries unsent, due at `at`, their attempts untouched."""

    async def list_outbox(
        self, status: DeliveryStatus | None = None, limit: int = 200
    ) -> list[Delivery]: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def retry_deliveries(self, delivery_id: str | None, now: datetime) -> int:
        """Re-queue one dead (or pending) delivery, or every dead one when id is None."""

    async def drop_deliveries(self, delivery_id: str | None) -> int:
        """Discard one delivery, or every dead one when id is None."""

    async def outbox_stats(self) -> OutboxStats: ...

    # --- groups (rules with group_by) --------------------------------------------------------

    async def due_groups(self, now: datetime, limit: int = 100) -> list[OpenGroup]:
        """Open groups due by `now` with their events, the longest overdue first."""

    async def open_groups(self) -> list[OpenGroup]:
        """Every open group with its events (the dashboard, tests)."""

    async def flush_group(self, flush: GroupFlush, at: datetime) -> None:
        """Write one flush in one transaction: queue its notifications (created at `at`),
        mark its events shown, move the group to `due_at` (None: close it). Raises
        StaleCommit, writing nothing, when the group changed since it was read (another
        flusher moved it, or events joined a group being closed)."""

    # --- sink memory (Slack message per job) ------------------------------------------------

    async def get_message_ref(self, sink: str, source: str, job_id: str) -> MessageRef | None: ...

    async def set_message_ref(self, sink: str, source: str, job_id: str, ref: MessageRef) -> None:
        ...

    # --- silences (bridge.silences; SQL in bridge.store.silences) ---------------------------

    async def add_silence(self, silence: Silence) -> None: ...

    async def get_silence(self, silence_id: str) -> Silence | None: ...

    async def active_silences(self, now: datetime) -> list[Silence]:
        """The silences in force at `now` (started, not ended)."""

    async def list_silences(self, now: datetime, *, expired: bool = False,
                            limit: int = 500) -> list[Silence]:
        """Active and pending silences, newest first; with `expired`, ended ones too."""

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End a silence now; False when no silence of that id is still in force."""

    async def silenced_count(self, silence_id: str) -> int:
        """How many notifications the outbox records as muted by this silence (silenced
        rows are kept 7 days)."""

    async def queue_once(self, scope: str, key: str, notifications: Sequence[Notification],
                         at: datetime, expires: datetime) -> bool:
        """Claim `key` of `scope` until `expires` and queue `notifications` with it, in one
        transaction; False (nothing written) when it was claimed already, by any instance:
        a daily reminder is queued once (bridge.reminders)."""

    # --- Slack button presses (bridge.store.actions) -----------------------------------------

    async def record_action(self, record: ActionRecord) -> None: ...

    async def list_actions(self, source: str | None = None, job_id: str | None = None,
                           limit: int = 200) -> list[ActionRecord]:
        """Newest first."""

    # --- polls per 5-minute bucket (bridge.store.poll_buckets) -------------------------------

    async def add_poll_counts(self, counts: Sequence[PollBucket],
                              prune_before: datetime | None = None) -> None:
        """Add poll counts to their buckets; with `prune_before`, drop older buckets."""

    async def poll_buckets(self, since: datetime, source: str | None = None
                           ) -> list[PollBucket]:
        """The buckets from the one holding `since` on, per source oldest first."""
