"""A source's request budget: the vendor's rate-limit headers read on every answer, requests
paced so a poll slows down before the limit instead of running into it, and how long a 429
asks us to sit out.

The vendors announce their limits differently:

- Zendesk: `X-Rate-Limit` / `X-Rate-Limit-Remaining` per minute on every answer, and the
  IETF-draft `ratelimit-limit` / `ratelimit-remaining` / `ratelimit-reset` on list
  endpoints; a 429 carries `Retry-After`.
- JTL: `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Interval-Length-Seconds`;
  it documents no `Retry-After`, so an exhausted budget waits out one interval.
- Terminal: 100 requests per second per connection, announced by no header: a fixed
  minimum spacing between requests (`min_spacing`).

`RatePacer` is the per-source state (one per `SourceClient`): `observe()` after each answer,
`await before_request()` before each request, `wait_after_429()` for the in-poll wait. The
clock and the sleep are injected so tests drive time without waiting.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.retry_after import retry_delay

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

LIMIT_HEADERS = ("x-rate-limit", "x-ratelimit-limit", "ratelimit-limit")
REMAINING_HEADERS = ("x-rate-limit-remaining", "x-ratelimit-remaining", "ratelimit-remaining")
WINDOW_HEADERS = ("x-ratelimit-interval-length-seconds",)
# The longest wait sat out inside one poll (a 429's Retry-After, an exhausted budget), unless
# the source's `rate_limit_wait` says otherwise. Zendesk counts per minute; a longer wait
# fails the poll with `retry_after` and the scheduler backs off instead, so one poll never
# holds its source for long.
MAX_IN_POLL_WAIT = 60.0
# Below this share of the limit, requests are spread over what is left of the window.
LOW_BUDGET_SHARE = 0.1
_LEADING_INT = re.compile(r"\s*(\d+)")
_WINDOW_PARAM = re.compile(r";\s*w=(\d+)")


@dataclass(slots=True)
class RateBudget:
    """What a source's API last said about its budget, and how often it refused us. Read by
    `/metrics` (`bridge_source_rate_limit_remaining`, `bridge_source_rate_limited`)."""

    limit: int | None = None
    remaining: int | None = None
    # Seconds the limit is counted over (JTL's interval, a `w=` parameter, Zendesk's minute).
    window: float | None = None
    # When (on the pacer's clock) the budget is full again, as last announced or assumed.
    resets_at: float | None = None
    # 429 answers seen so far.
    rate_limited: int = 0


def _first_int(lowered: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    for name in names:
        match = _LEADING_INT.match(lowered.get(name, ""))
        if match:
            return int(match.group(1))
    return None


class RatePacer:
    """Paces one source's requests under its vendor's announced budget."""

    def __init__(
        self, *, default_window: float = 60.0, min_spacing: float = 0.0,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
        max_wait: float = MAX_IN_POLL_WAIT,
    ) -> None:
        self.budget = RateBudget()
        self.default_window = default_window
        self.min_spacing = min_spacing
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._last_request: float | None = None
        # Concurrent lookups of one poll take their turn, so the spacing holds across them.
        self._turn = asyncio.Lock()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take in what an answer's headers say about the budget."""
        lowered = {k.lower(): v for k, v in headers.items()}
        limit = _first_int(lowered, LIMIT_HEADERS)
        remaining = _first_int(lowered, REMAINING_HEADERS)
        if limit is None and remaining is None:
            return
        budget = self.budget
        budget.limit = limit if limit is not None else budget.limit
        budget.remaining = remaining
        window = _first_int(lowered, WINDOW_HEADERS)
        declared = _WINDOW_PARAM.search(lowered.get("ratelimit-limit", ""))
        if window is None and declared:
            window = int(declared.group(1))
        budget.window = float(window) if window else budget.window or self.default_window
        reset = retry_delay({k: v for k, v in lowered.items() if "reset" in k},
                            now=datetime.now(UTC))
        now = self._clock()
        if reset is not None:
            budget.resets_at = now + reset
        elif budget.resets_at is None or budget.resets_at <= now:
            # No reset announced: assume the worst, a window that started just now.
            budget.resets_at = now + budget.window

    def wait_after_429(self, headers: Mapping[str, str]) -> float | None:
        """Seconds a 429 asks us to wait: its `Retry-After` (or reset header), else until the
        announced budget is full again; None when it says nothing we can read."""
        self.budget.rate_limited += 1
        self.observe(headers)
        asked = retry_delay(headers, now=datetime.now(UTC))
        if asked is not None:
            return asked
        if self.budget.remaining == 0 and self.budget.resets_at is not None:
            return max(0.0, self.budget.resets_at - self._clock())
        return None

    async def sit_out(self, seconds: float) -> None:
        """Wait out a 429; the budget is unknown again until the next answer says."""
        await self._sleep(seconds)
        self.budget.remaining = None

    def spacing(self) -> float:
        """Seconds to leave between requests now: the fixed minimum, or, with little budget
        left, what remains of the window spread over the requests still allowed."""
        budget = self.budget
        gap = self.min_spacing
        if budget.remaining is None or budget.resets_at is None or budget.limit is None:
            return gap
        left = budget.resets_at - self._clock()
        if left <= 0 or budget.remaining > budget.limit * LOW_BUDGET_SHARE:
            return gap
        return max(gap, left / max(budget.remaining, 1))

    def delay(self) -> float:
        """Seconds to wait before the next request: until the reset when the budget is
        spent, else the spacing since the last request."""
        now = self._clock()
        budget = self.budget
        if budget.remaining == 0 and budget.resets_at is not None and budget.resets_at > now:
            return budget.resets_at - now
        if self._last_request is None:
            return 0.0
        return self._last_request + self.spacing() - now

    async def before_request(self) -> None:
        """Wait, if the budget asks for it, before sending the next request."""
        async with self._turn:
            delay = min(self.delay(), self.max_wait)
            if delay > 0 and math.isfinite(delay):
                await self._sleep(delay)
            self._last_request = self._clock()
            if self.budget.remaining is not None and self.budget.remaining > 0:
                # Counted down locally until the next answer says better.
                self.budget.remaining -= 1
