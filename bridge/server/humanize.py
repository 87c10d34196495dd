"""Durations as people read them, for the dashboard's pages and its timeline's tooltips."""

from __future__ import annotations


def human_duration(value: float | None) -> str:
    """`0.42` -> "420ms", `75` -> "1m 15s", `90000` -> "1d 1h"."""
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    total = int(value)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"
