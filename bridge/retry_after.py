"""How long an HTTP answer asks us to wait: `Retry-After` and rate-limit reset headers.

One reader for sources and sinks. A server may say "120", "0.62" (Terminal), an HTTP-date,
or only how long until its rate-limit window resets. Whatever it says, the answer is a
finite number of seconds in [0, maximum], or None when it said nothing readable: a hostile
or broken server sending `inf`, `-5`, `1e20` or `NaN` can neither wedge a row (a timedelta
of 1e20 s overflows) nor make us hammer it. Pure: the caller passes the time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A server asking for more than this is asked again after it; sinks configure their own
# (`max_retry_after`), sources use this.
DEFAULT_MAX_RETRY_AFTER = 3600.0

# Rate-limit reset headers, read only when there is no Retry-After. Their values are
# seconds until the reset, or (GitHub style) the reset as Unix epoch seconds.
RESET_HEADERS = ("ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset")
# A reset value this large is an epoch timestamp (2001-09-09), not a delay.
_EPOCH_THRESHOLD = 1e9
# Digits with an optional fraction and exponent, or the words float() knows for inf and NaN.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf(?:inity)?|nan)",
                     re.IGNORECASE)


def clamp(seconds: float | None, maximum: float) -> float | None:
    """`seconds` within [0, maximum]; None for None or NaN (a wait nobody can read)."""
    if seconds is None or math.isnan(seconds):
        return None
    top = maximum if math.isfinite(maximum) and maximum >= 0 else DEFAULT_MAX_RETRY_AFTER
    return min(max(seconds, 0.0), top)


def parse_retry_after(
    value: str | None, *, now: datetime, maximum: float = DEFAULT_MAX_RETRY_AFTER
) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta seconds (fractional allowed) or an
    HTTP-date (a past date means now, 0); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        return clamp(float(text), maximum)
    return clamp(_seconds_until(text, now), maximum)


def retry_delay(
    headers: Mapping[str, str] | None, *, now: datetime,
    maximum: float = DEFAULT_MAX_RETRY_AFTER,
) -> float | None:
    """The wait an answer's headers ask for: `Retry-After`, else a rate-limit reset header;
    None when they ask for nothing readable. Header names in any case."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    found = parse_retry_after(lowered.get("retry-after"), now=now, maximum=maximum)
    if found is not None:
        return found
    for name in RESET_HEADERS:
        text = (lowered.get(name) or "").strip()
        if _NUMBER.fullmatch(text):
            reset = float(text)
            if reset >= _EPOCH_THRESHOLD and math.isfinite(reset):
                reset -= _epoch_seconds(now)
            return clamp(reset, maximum)
    return None


def _seconds_until(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def _epoch_seconds(now: datetime) -> float:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.timestamp()
