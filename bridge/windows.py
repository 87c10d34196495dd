"""Recurring maintenance windows (`[[windows]]` in rules.toml): when one is open. Pure.

    [[windows]]
    name = "weekend-maintenance"
    days = ["sat", "sun"]          # the days a window *starts* on; default every day
    start = "22:00"
    end = "06:00"                  # before start: the window crosses midnight
    timezone = "Europe/Berlin"     # wall-clock time there, DST included (zoneinfo)
    sources = ["jtl*"]             # globs; default every source
    summary = true                 # failures it mutes arrive as one digest when it ends

A rule names windows in `mute_during` (silenced while one is open) or `active_during`
(silenced while none is). Times are wall-clock times in `timezone`: a window "01:00-04:00"
on the night Europe/Berlin springs forward lasts two real hours, not three, and the open
check converts the UTC clock into that zone each time instead of assuming an offset.
A window that crosses midnight belongs to the day it starts on: "sat 22:00-06:00" is open
from Saturday 22:00 to Sunday 06:00.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock_time(value: object) -> time:
    if isinstance(value, time):
        return value
    text = str(value).strip()
    hours, sep, minutes = text.partition(":")
    if (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
            and int(hours) < 24 and int(minutes) < 60):
        return time(int(hours), int(minutes))
    if text == "24:00":
        return time(0, 0)
    raise ValueError(f'expected a wall-clock time "HH:MM" like "22:00", got {value!r}')


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    days: list[str] = Field(default_factory=lambda: list(DAYS), min_length=1)
    start: ClockTime
    end: ClockTime
    timezone: str = "UTC"
    sources: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    # Failed/cancelled notifications this window mutes are collected and delivered as one
    # digest per (rule, sink) when it ends (bridge.stages.silence), instead of only recorded.
    summary: bool = False

    @field_validator("days")
    @classmethod
    def _known_days(cls, days: list[str]) -> list[str]:
        lowered = [day.strip().lower()[:3] for day in days]
        for given, day in zip(days, lowered, strict=True):
            if day not in DAYS:
                raise ValueError(f"unknown day {given!r}; write {', '.join(DAYS)}")
        return lowered

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {name!r}; use an IANA name like "
                             '"Europe/Berlin" or "UTC"') from None
        return name

    def applies_to(self, source: str) -> bool:
        return any(fnmatchcase(source, glob) for glob in self.sources)

    def is_open(self, now: datetime) -> bool:
        """Whether the window is open at `now` (an aware datetime, any zone)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        wall = local.time().replace(tzinfo=None)
        today = DAYS[local.weekday()]
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        if self.start < self.end:  # within one day
            return today in self.days and self.start <= wall < self.end
        # Crosses midnight ("24:00" is 00:00; start == end is a whole day): the evening part
        # of a window starting today, or the morning part of one that started yesterday.
        return ((today in self.days and wall >= self.start)
                or (yesterday in self.days and wall < self.end))

    def ends_after(self, now: datetime) -> datetime:
        """When the occurrence open at `now` closes (call only while `is_open(now)`)."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        wall = local.time().replace(tzinfo=None)
        today = local.date()
        if self.start < self.end or wall < self.end:
            # Within one day, or the morning part of one that started yesterday: ends today.
            return self._at(today, zone)
        return self._at(today + timedelta(days=1), zone)

    def _at(self, day: date, zone: ZoneInfo) -> datetime:
        return datetime.combine(day, self.end, tzinfo=zone)
