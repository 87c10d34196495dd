"""Groups as values: what joins a group, what the store holds of an open one, what a flush
writes. No I/O; `bridge.groups.keys` computes keys, `digest` renders, `flusher` flushes.

A group is the events of one rule whose `group_by` fields have equal values (its `key`,
stored as JSON text so every backend compares it as one string). It opens with its first
event, is flushed `group_wait` later, then at most once per `group_interval` while events
keep coming, and closes at a due time with nothing new once every job in it has finished
(contract section 5): the next event of that key opens a new group (a new digest message).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.model import Event, Notification


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupEntry:
    """One event joining its rule's group of `key` (the group stage's output)."""

    rule: str
    key: str
    event: Event
    # The rule's group_wait: a group this event opens is first due this long after it.
    wait: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupedEvent:
    """An event of an open group; `flushed` once a digest has shown it."""

    event: Event
    flushed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenGroup:
    """A group as the store holds it: its events oldest first, when it is due, how many
    digests it has had."""

    id: str
    rule: str
    key: str
    first_at: datetime
    due_at: datetime
    flushes: int
    events: Sequence[GroupedEvent] = ()

    @property
    def values(self) -> Mapping[str, Any]:
        """The key as the template sees it (`group.source`)."""
        decoded = json.loads(self.key)
        return decoded if isinstance(decoded, dict) else {}

    @property
    def new(self) -> list[Event]:
        """The events no digest has shown yet."""
        return [grouped.event for grouped in self.events if not grouped.flushed]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFlush:
    """One flush, written in one transaction: the digest's outbox rows, the events it showed,
    and when the group is due next (None closes it; with nothing sent or shown, only the due
    time moves and the flush count stays). `flushes` is the count the flusher read:
    the write applies only if no other flusher advanced the group meanwhile."""

    group_id: str
    flushes: int
    notifications: Sequence[Notification] = ()
    shown: Sequence[str] = ()
    due_at: datetime | None = None


def key_text(values: Mapping[str, Any]) -> str:
    """A key's stored form: compact JSON in `group_by` order (equal keys, equal text)."""
    return json.dumps(dict(values), separators=(",", ":"), ensure_ascii=False, default=str)


def group_id(rule: str, key: str, first_event: str) -> str:
    """Stable per (rule, key, first event): a reopened group is a new group."""
    digest = hashlib.sha256(f"{rule}\x1f{key}\x1f{first_event}".encode()).hexdigest()
    return f"grp_{digest[:24]}"
