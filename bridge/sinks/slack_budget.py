"""Slack's rate limits as token buckets, each behind a gate that lets the most urgent call in.

Slack documents its budgets per method (api.slack.com/apis/rate-limits): posting messages
"1 per second, short bursts >1 allowed" per channel; `chat.update` is Tier 3, "50+ per
minute, sporadic bursts are welcome", per method per workspace (token); incoming webhooks
1 per second. Each budget is a `TokenBucket` (it holds `burst` calls and refills at the
rate) behind a `Gate`: calls wait at the gate, and the gate hands each token to the most
urgent waiter (lowest rank, then the oldest), not to the first that came. A 429 pauses the
one gate it came from for its Retry-After; the other methods keep going.

Why not `aiolimiter`: its limiter reads the event loop's clock (tests could not drive it
with the sender's injected clock without a custom loop), serves waiters in arrival order
(urgency needs the choice of who goes next), and has no way to hold a bucket shut for a
Retry-After. The bucket here is a few lines of arithmetic; the gate is the scheduling.

Gates are shared by every sender that spends the same budget: two sinks with one token
edit from one Tier 3 budget (`shared_gate`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from bridge.errors import RetryableDelivery

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """One token bucket's shape: `burst` calls at once, refilled at `per_second`
    (`math.inf`: no limit)."""

    per_second: float
    burst: int = 1


class TokenBucket:
    """Tokens refill continuously at the budget's rate up to its burst; a call spends one."""

    def __init__(self, budget: Budget, now: float):
        self.budget = budget
        self._tokens = float(budget.burst)
        self._at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now); spends nothing."""
        if math.isinf(self.budget.per_second):
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.budget.per_second

    def shortfall(self, now: float, calls: int) -> float:
        """Seconds until `calls` more calls could have gone out (0: they can now)."""
        if math.isinf(self.budget.per_second):
            return 0.0
        self._refill(now)
        return max(0.0, (calls - self._tokens) / self.budget.per_second)

    def spend(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        refilled = self._tokens + elapsed * self.budget.per_second
        self._tokens = min(float(self.budget.burst), refilled)
        self._at = max(self._at, now)


class Ticket(Protocol):
    """Who waits at a gate: lower `rank` first (the notification's priority), then `seq`."""

    @property
    def rank(self) -> int: ...

    @property
    def seq(self) -> int: ...


@dataclass(slots=True, eq=False)
class _Waiter:
    ticket: Ticket
    max_wait: float
    granted: asyncio.Future[None]


@dataclass(slots=True, eq=False, weakref_slot=True)
class Gate:
    """One budget: its bucket, the pause the last 429 asked for, and who waits for it."""

    name: str
    bucket: TokenBucket
    clock: Clock
    sleep: Sleep
    paused_until: float = 0.0
    rate_limited: int = 0
    _waiters: list[_Waiter] = field(default_factory=list)
    _pump: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.granted.done())

    async def acquire(self, ticket: Ticket, *, max_wait: float) -> None:
        """Wait for a token, the most urgent waiter first. A pause (429) longer than
        `max_wait` raises RetryableDelivery at once: the outbox retries after it."""
        granted = self.enter(ticket, max_wait=max_wait)
        try:
            await granted
        finally:
            if not granted.done():  # the caller was cancelled while waiting
                granted.cancel()

    def enter(self, ticket: Ticket, *, max_wait: float) -> asyncio.Future[None]:
        """Join the waiters now (synchronously: the next `expected_wait` counts it); the
        future resolves when it may call. Cancel the future to leave."""
        self._check_pause(max_wait)
        waiter = _Waiter(ticket=ticket, max_wait=max_wait,
                         granted=asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name=f"slack-gate:{self.name}")
        return waiter.granted

    def expected_wait(self, ticket: Ticket) -> float:
        """About how long `ticket` would wait if it came to the gate now: the pause, and the
        tokens that the waiters ahead of it (more urgent, or as urgent and older) and it
        need. More urgent calls that come later only make it longer."""
        ahead = sum(1 for w in self._waiters if not w.granted.done()
                    and (w.ticket.rank, w.ticket.seq) < (ticket.rank, ticket.seq))
        now = self.clock()
        return max(self.paused_until - now, self.bucket.shortfall(now, ahead + 1))

    def pause(self, seconds: float) -> None:
        """Slack answered 429: nothing goes through this gate for `seconds`."""
        self.rate_limited += 1
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def too_long(self, delay: float) -> RetryableDelivery:
        return RetryableDelivery(
            f"Slack asks to wait {delay:.1f} s before the next {self.name} call; "
            "the outbox will retry then", retry_after=delay)

    def _check_pause(self, max_wait: float) -> None:
        delay = self.paused_until - self.clock()
        if delay > max_wait:
            raise self.too_long(delay)

    async def _run(self) -> None:
        while True:
            self._waiters = [w for w in self._waiters if not w.granted.done()]
            if not self._waiters:
                return
            now = self.clock()
            paused = self.paused_until - now
            if paused > 0:
                # A pause the waiters should not sit out goes back to the outbox now.
                for waiter in self._waiters:
                    if paused > waiter.max_wait:
                        waiter.granted.set_exception(self.too_long(paused))
            wait = max(paused, self.bucket.wait(now))
            if wait > 0:
                await self.sleep(wait)
                continue
            ready = [w for w in self._waiters if not w.granted.done()]
            if not ready:
                continue
            first = min(ready, key=lambda w: (w.ticket.rank, w.ticket.seq))
            self.bucket.spend(now)
            first.granted.set_result(None)
            # Let the granted call start before the next grant is weighed.
            await asyncio.sleep(0)


# Gates alive in this process, by (loop, what Slack limits, the clock). Weak: a gate lives
# as long as a sender holds it.
_GATES: weakref.WeakValueDictionary[Hashable, Gate] = weakref.WeakValueDictionary()


def shared_gate(scope: tuple[str, ...], secret: str, budget: Budget, *, clock: Clock,
                sleep: Sleep) -> Gate:
    """The gate of one Slack budget (e.g. `("chat.update", base_url)` with the token as
    `secret`), shared by every sender in this event loop that spends it. The first sender's
    budget and clock make it; the secret is only hashed into the key."""
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    key = (id(loop), *scope, digest, clock)
    gate = _GATES.get(key)
    if gate is None or gate._loop is not loop:
        name = scope[0] + (f" to {scope[2]}" if len(scope) > 2 else "")
        gate = Gate(name=name, bucket=TokenBucket(budget, clock()), clock=clock,
                    sleep=sleep, _loop=loop)
        _GATES[key] = gate
    return gate
