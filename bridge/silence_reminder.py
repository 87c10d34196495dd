"""A daily reminder of long silences, per sink (`silence_reminder` in a `[[sinks]]` table).

    [[sinks]]
    name = "ops-slack"
    # ...
    silence_reminder = { at = "09:00", timezone = "Europe/Berlin", longer_than = "24h" }

Once a day, from `at` wall-clock time in `timezone` (default `[bridge] timezone`, DST
included), the sink gets one message listing the silences in force that are *long*: in force
for at least `longer_than` already, ending at least `longer_than` from now, or with no end
(`until_resolved`). Each entry shows the matchers, author, comment, since / until and how
many notifications it silenced. When no silence is long, nothing is sent that day. The
message goes through the outbox like any notification (durable, retried, dead-lettered),
rendered by `template` (bundled `silence_reminder.slack.j2`); a webhook sink gets a
`silence.reminder` body (bridge.webhooks.catalog).

This module decides which silences qualify, which day is due and what the message says;
bridge.reminders runs it on a clock and claims each (sink, day) in the store, so the
reminder is queued once per day however many instances run and however often they restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.config.values import PositiveDuration
from bridge.model import Notification, Priority
from bridge.windows import ClockTime

if TYPE_CHECKING:  # bridge.silences reads the config schema, which reads this module
    from bridge.silences import Silence

# The rule name reminder rows carry (the outbox, `bridge outbox`, the dashboard).
RULE = "silence-reminder"
# The `source` of reminder rows: about silences, which may span every source.
SOURCE = "*"
DEFAULT_TEMPLATE = "silence_reminder.slack.j2"
# Listed at most; the message says how many more there are.
SHOWN = 25


class SilenceReminder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: ClockTime
    # None: the `[bridge] timezone`.
    timezone: str | None = None
    longer_than: PositiveDuration = timedelta(hours=24)
    template: str = Field(default=DEFAULT_TEMPLATE, min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r}; use an IANA name like "
                             '"Europe/Berlin" or "UTC"') from None
        return name

    def zone(self, default: str) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone or default)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")  # an unknown [bridge] timezone is warned about at start

    def due_day(self, now: datetime, default_zone: str) -> date | None:
        """The local day whose reminder is due at `now` (from `at` until midnight), or
        None before `at`. A day missed entirely (the bridge was down) is not caught up."""
        local = now.astimezone(self.zone(default_zone))
        return local.date() if local.time().replace(tzinfo=None) >= self.at else None

    def is_long(self, silence: Silence, now: datetime) -> bool:
        """In force at `now` and long: on for `longer_than` already, ending at least that
        far ahead, or open-ended (until resolved)."""
        if not silence.active(now):
            return False
        if silence.ends is None:
            return True
        return now - silence.starts >= self.longer_than or silence.ends - now >= self.longer_than


@dataclass(frozen=True, slots=True, kw_only=True)
class LongSilence:
    """One silence as the reminder's template sees it (`silences`)."""

    id: str
    matchers: Mapping[str, str]
    starts: datetime
    ends: datetime | None
    until_resolved: bool
    comment: str
    author: str
    # Notifications it silenced that the outbox still records (silenced rows are kept 7 days).
    silenced: int
    # How long it has been in force at the reminder's time.
    active_for: timedelta

    @property
    def matchers_text(self) -> str:
        return " ".join(f"{name}={glob}" for name, glob in sorted(self.matchers.items()))

    def body(self) -> dict[str, Any]:
        """This silence in the `silence.reminder` webhook body."""
        return {"id": self.id, "matchers": dict(self.matchers), "starts": stamp(self.starts),
                "ends": stamp(self.ends) if self.ends else None,
                "until_resolved": self.until_resolved, "comment": self.comment,
                "author": self.author, "silenced": self.silenced}


def long_silence(silence: Silence, silenced: int, now: datetime) -> LongSilence:
    return LongSilence(id=silence.id, matchers=silence.matchers, starts=silence.starts,
                       ends=silence.ends, until_resolved=silence.until_resolved,
                       comment=silence.comment, author=silence.author, silenced=silenced,
                       active_for=now - silence.starts)


def context(silences: Sequence[LongSilence], *, sink: str, reminder: SilenceReminder,
            now: datetime) -> dict[str, Any]:
    """What the reminder's template sees. `at` is the reminder's time (`ago` reads it)."""
    return {"silences": list(silences), "shown": list(silences[:SHOWN]),
            "more": max(0, len(silences) - SHOWN), "sink": sink,
            "longer_than": reminder.longer_than, "at": now, "rule": RULE}


def sample(now: datetime) -> list[LongSilence]:
    """Two long silences as a reminder at `now` lists them (`bridge check`, the catalog's
    example): one on for a day and a half, one until its job succeeds."""
    since = now - timedelta(hours=36)
    return [
        LongSilence(id="sil_5f2c9e0a7b1d4e36", matchers={"source": "jtl*", "rule": "job-failed"},
                    starts=since, ends=now + timedelta(days=2), until_resolved=False,
                    comment="ERP upgrade", author="ana", silenced=14,
                    active_for=now - since),
        LongSilence(id="sil_c6097ee41ef24639", matchers={"source": "zendesk", "job.id": "8b72"},
                    starts=now - timedelta(hours=3), ends=None, until_resolved=True,
                    comment="", author="slack:bo (U2)", silenced=0,
                    active_for=timedelta(hours=3)),
    ]


def event_id(sink: str, day: date) -> str:
    """One reminder per (sink, local day): its outbox row's key (and `webhook-id`)."""
    return f"silence-reminder:{sink}:{day.isoformat()}"


def notification(sink: str, day: date, payload: Mapping[str, Any]) -> Notification:
    # Routine, never urgent: the outbox sends failures first.
    return Notification(event_id=event_id(sink, day), rule=RULE, sink=sink, source=SOURCE,
                        job_id=None, payload=payload, on="silence_reminder",
                        priority=Priority.LOW)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dump(body: Mapping[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
