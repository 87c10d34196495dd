"""Source health: poll outcomes -> whether a source is up, and `source_down` / `source_up`.

Pure, like detection (`bridge.detect`): no I/O and no clock. A failed poll counts towards
the source's `down_after`; a successful one resets the count and, after an outage, says
`source_up`. Event ids come from the period that ends, never from `now`, so a replayed
outcome yields the same id.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bridge.model import Event, EventKind, SourceHealth, event_id


def source_failed(
    *, source: str, health: SourceHealth | None, reason: str, now: datetime, down_after: int = 1
) -> tuple[SourceHealth, tuple[Event, ...]]:
    """A poll failed. The source goes down (`source_down`, once) when this is the
    `down_after`-th failed poll in a row; before that it stays up with the failure counted,
    so one hiccup of a vendor's API pages nobody."""
    if health is not None and not health.up:
        return replace(health, reason=reason, failures=health.failures + 1, last_poll_at=now), ()
    failures = (health.failures if health else 0) + 1
    if failures < down_after:
        base = health or SourceHealth(source=source, since=now)
        return replace(base, reason=reason, failures=failures, last_poll_at=now), ()
    down = SourceHealth(
        source=source,
        up=False,
        since=now,
        reason=reason,
        failures=failures,
        last_poll_at=now,
        last_latency=health.last_latency if health else None,
    )
    # `since` of the up period that ends here: the same failure replayed gets the same id.
    up_since = health.since.isoformat() if health and health.since else ""
    event = Event(
        id=event_id(source, "", EventKind.SOURCE_DOWN, up_since),
        on=EventKind.SOURCE_DOWN,
        source=source,
        at=now,
        reason=reason,
    )
    return down, (event,)


def source_succeeded(
    *, source: str, health: SourceHealth | None, now: datetime, latency: float | None
) -> tuple[SourceHealth, tuple[Event, ...]]:
    """A poll worked: the source is up (`source_up` when it recovers from being down)."""
    if health is None:
        return SourceHealth(source=source, since=now, last_poll_at=now, last_latency=latency), ()
    if health.up:
        # A success ends a run of failures that stayed below `down_after`.
        return replace(health, last_poll_at=now, last_latency=latency, failures=0,
                       reason=None), ()
    up = SourceHealth(source=source, since=now, last_poll_at=now, last_latency=latency)
    down_since = health.since.isoformat() if health.since else ""
    event = Event(
        id=event_id(source, "", EventKind.SOURCE_UP, down_since),
        on=EventKind.SOURCE_UP,
        source=source,
        at=now,
        duration=(now - health.since) if health.since else None,
        # Why it was down, for a "recovered from ..." message.
        reason=health.reason,
    )
    return up, (event,)
