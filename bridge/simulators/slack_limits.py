"""The fake Slack's rate limits: Slack's documented budgets as token buckets.

From Slack's rate-limit docs (api.slack.com/apis/rate-limits): "posting messages: 1 per
second, short bursts >1 allowed" per channel; `chat.update` is Tier 3, "50+ per minute,
sporadic bursts are welcome", per method per workspace (one token here); incoming webhooks
1 per second. A call over its budget is answered with 429 and a whole-second Retry-After.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackLimits:
    """The budgets the fake enforces. Each is a token bucket: it holds `*_burst` calls and
    refills at the rate."""

    post_per_second: float = 1.0
    post_burst: int = 5
    update_per_minute: float = 50.0
    update_burst: int = 20
    webhook_per_second: float = 1.0
    webhook_burst: int = 5


# What `FakeSlack` enforces unless told otherwise.
SLACK_LIMITS = SlackLimits()


@dataclass(slots=True)
class _Bucket:
    rate: float  # calls per second
    capacity: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Spend one call; 0 if it fits, else the seconds until it would (nothing spent)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Budgets:
    """The buckets of one fake Slack, keyed by what Slack limits: (token, method, channel)
    for posts, (token, method) for edits, the webhook's path for incoming webhooks."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float]):
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def api_call(self, token: str, method: str, channel: str) -> float:
        """Seconds until `method` fits again; 0 spends one call of it. `channel` is the
        channel's id, so a name and its id share one budget."""
        limits = self.limits
        if method == "chat.postMessage":
            return self._take((token, method, channel), limits.post_per_second,
                              limits.post_burst)
        if method == "chat.update":
            return self._take((token, method), limits.update_per_minute / 60,
                              limits.update_burst)
        return 0.0

    def webhook(self, path: str) -> float:
        return self._take(("incoming-webhook", path), self.limits.webhook_per_second,
                          self.limits.webhook_burst)

    def _take(self, key: tuple[str, ...], rate: float, burst: int) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate=rate, capacity=burst, tokens=burst,
                                                  at=now)
        return bucket.take(now)


def whole_seconds(wait: float) -> str:
    """Slack's Retry-After is a whole number of seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
