"""Timestamps as the store keeps them: integer microseconds since the Unix epoch (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _US


def from_us(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + value * _US
