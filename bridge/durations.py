"""Durations as messages show them, for templates and for the reasons detection writes.

Kept apart from the template filters so that detection, which must not import Jinja, can
use the same wording.
"""

from __future__ import annotations

from datetime import timedelta


def format_duration(value: timedelta | float | int | None) -> str:
    """A short human duration: "45s", "5m 03s", "1h 02m", "2d 03h"."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    total = round(abs(seconds))
    sign = "-" if seconds < 0 and total else ""
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours:02d}h"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    elif minutes:
        text = f"{minutes}m {secs:02d}s"
    else:
        text = f"{secs}s"
    return sign + text
