"""Silences: operator-made mutes over event fields (contract sections 1 and 8). Pure.

A silence has matchers (`field = glob`, all must match), a time span (`starts` .. `ends`)
or `until_resolved` (it ends when a job it matches reaches `succeeded`), a comment and an
author. The silence stage (bridge.stages.silence) asks which silence mutes a match; the
store keeps them (table `silences`) so every instance sees the same ones; the API, the CLI
and the dashboard make them through `new_silence`, which says what is wrong with a request.

Matchers use the names templates see: `source`, `rule`, `on`, `from`, `to`, `job.id`,
`job.state`; a glob (`jtl*`, `8b72*`) as in a rule's `source`. A field the event lacks
(`to` on an `appeared` event) is the empty string, which only `*` matches.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from bridge.config.schema import parse_duration
from bridge.model import Event, JobState

MATCHER_FIELDS = ("source", "rule", "on", "from", "to", "job.id", "job.state")
_BODY_KEYS = ("matchers", "starts", "ends", "duration", "until_resolved", "comment", "author")


class SilenceError(ValueError):
    """A silence request that cannot be made; the message says what to send instead."""


class SilenceStatus(StrEnum):
    PENDING = "pending"  # starts in the future
    ACTIVE = "active"
    EXPIRED = "expired"


class EndReason(StrEnum):
    EXPIRED = "expired"  # an operator expired it (API, CLI, dashboard)
    RESOLVED = "resolved"  # until_resolved: its job reached succeeded


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    id: str
    matchers: Mapping[str, str]
    starts: datetime
    created_at: datetime
    ends: datetime | None = None
    until_resolved: bool = False
    comment: str = ""
    author: str = ""
    ended: EndReason | None = None

    def status(self, now: datetime) -> SilenceStatus:
        if self.ends is not None and now >= self.ends:
            return SilenceStatus.EXPIRED
        if now < self.starts:
            return SilenceStatus.PENDING
        return SilenceStatus.ACTIVE

    def active(self, now: datetime) -> bool:
        return self.status(now) is SilenceStatus.ACTIVE

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(fnmatchcase(fields.get(name, ""), glob) for name, glob in self.matchers.items())

    def resolved_by(self, event: Event) -> bool:
        """Whether `event` ends this until_resolved silence: its job reached succeeded, and
        the job is one the silence names (its `source` and `job.id` matchers)."""
        job = event.job
        if not self.until_resolved or job is None or job.state is not JobState.SUCCEEDED:
            return False
        return (fnmatchcase(event.source, self.matchers.get("source", "*"))
                and fnmatchcase(job.id, self.matchers.get("job.id", "*")))

    def describe(self) -> str:
        """One line for logs and the silenced row: which silence, and why it was made."""
        why = f" ({self.comment})" if self.comment else ""
        return f"silence {self.id}{why}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts": self.starts.isoformat(),
            "ends": self.ends.isoformat() if self.ends else None,
            "until_resolved": self.until_resolved,
            "comment": self.comment,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "ended": str(self.ended) if self.ended else None,
        }

    def expire(self, now: datetime) -> Silence:
        return replace(self, ends=now if self.ends is None or self.ends > now else self.ends,
                       ended=EndReason.EXPIRED)


def event_fields(event: Event, rule: str) -> dict[str, str]:
    """The values matchers see for `event` notified by `rule`."""
    job = event.job
    return {
        "source": event.source,
        "rule": rule,
        "on": str(event.on),
        "from": str(event.from_state) if event.from_state else "",
        "to": str(event.to_state) if event.to_state else "",
        "job.id": job.id if job else "",
        "job.state": str(job.state) if job else "",
    }


def parse_matchers(raw: object) -> dict[str, str]:
    """`{"source": "jtl*", "job.id": "3c90*"}`, checked: known fields, non-empty globs."""
    if not isinstance(raw, Mapping) or not raw:
        raise SilenceError('`matchers` must be a non-empty object like {"source": "jtl*"}')
    matchers: dict[str, str] = {}
    for name, glob in raw.items():
        if name not in MATCHER_FIELDS:
            raise SilenceError(f"unknown matcher field {name!r}; known: "
                               f"{', '.join(MATCHER_FIELDS)}")
        if not isinstance(glob, str) or not glob.strip():
            raise SilenceError(f"matcher {name!r} needs a non-empty glob string")
        matchers[name] = glob.strip()
    return matchers


def parse_matcher_args(args: list[str]) -> dict[str, str]:
    """`["source=jtl*", "job.id=3c90"]` (the CLI's MATCHER arguments) -> matchers."""
    pairs: dict[str, str] = {}
    for arg in args:
        name, sep, glob = arg.partition("=")
        if not sep:
            raise SilenceError(f"matcher {arg!r} must be FIELD=GLOB, e.g. source=jtl*")
        pairs[name.strip()] = glob
    return parse_matchers(pairs)


def _time(body: Mapping[str, Any], key: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SilenceError(f"`{key}` must be an ISO 8601 time like 2026-11-23T22:00:00Z, "
                           f"got {value!r}") from None
    if moment.tzinfo is None:
        raise SilenceError(f"`{key}` needs a timezone (Z or +01:00), got {value!r}")
    return moment


def _text(body: Mapping[str, Any], key: str, limit: int = 1000) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str) or len(value) > limit:
        raise SilenceError(f"`{key}` must be text of at most {limit} characters")
    return value.strip()


def new_silence(body: object, now: datetime) -> Silence:
    """A new silence from an API body; SilenceError says what is wrong. A `duration` reads
    like the config's ("2h", "30m", "PT2H")."""
    if not isinstance(body, Mapping):
        raise SilenceError('send a JSON object: {"matchers": {...}, "ends": "..." or '
                           '"until_resolved": true, "comment": "...", "author": "..."}')
    unknown = [key for key in body if key not in _BODY_KEYS]
    if unknown:
        raise SilenceError(f"unknown key {unknown[0]!r}; known: {', '.join(_BODY_KEYS)}")
    matchers = parse_matchers(body.get("matchers"))
    starts = _time(body, "starts") or now
    ends = _time(body, "ends")
    until_resolved = body.get("until_resolved") is True
    if body.get("duration") is not None:
        if ends is not None:
            raise SilenceError("give `ends` or `duration`, not both")
        try:
            ends = starts + parse_duration(body["duration"])
        except ValueError as exc:
            raise SilenceError(f"`duration`: {exc}") from None
    if until_resolved and "job.id" not in matchers:
        raise SilenceError("`until_resolved` ends when the silenced job succeeds: it needs a "
                           "`job.id` matcher naming that job")
    if ends is None and not until_resolved:
        raise SilenceError("a silence needs an end: `ends`, `duration` or `until_resolved`")
    if ends is not None and ends <= starts:
        raise SilenceError("`ends` must be after `starts`")
    return Silence(id="sil_" + uuid.uuid4().hex[:16], matchers=matchers, starts=starts,
                   ends=ends, until_resolved=until_resolved, comment=_text(body, "comment"),
                   author=_text(body, "author", 200), created_at=now)


def duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 60}m"


def matchers_json(matchers: Mapping[str, str]) -> str:
    return json.dumps(dict(matchers), separators=(",", ":"), sort_keys=True)
