"""One Slack channel's send queue: in order, paced, honouring 429s, coalescing stale edits.

Slack allows about one message per second per channel and answers bursts with HTTP 429 +
`Retry-After`. Every send to a channel goes through its `ChannelSender`: one worker task
runs the queued operations in submission order and spaces the API calls `min_interval`
apart. A 429 is waited out and the same call repeated, so nothing is dropped; only a wait
longer than `max_wait` hands the delivery back to the outbox (RetryableDelivery) rather than
holding its lease (a Retry-After of `inf` or 1e20 is clamped first and takes that path).
While an edit of a message waits, a newer edit of the same message replaces it, and the
replaced one counts as delivered; an operation marked `final` (a terminal state) is never
replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from bridge.errors import RetryableDelivery
from bridge.retry_after import DEFAULT_MAX_RETRY_AFTER, clamp

log = logging.getLogger(__name__)

T = TypeVar("T")

# Slack always sends Retry-After with a 429; this is for Slack-compatible servers that do not.
DEFAULT_RATE_LIMIT_WAIT = 1.0
DEFAULT_MAX_WAIT = 30.0
# A 429 asking to wait 0 s (or a hair more) with `min_interval = 0` would repeat the call
# in a tight loop: every 429 waits at least this, and a call answered 429 this many times
# in a row goes back to the outbox.
MIN_RATE_LIMIT_WAIT = 0.05
MAX_RATE_LIMITS_PER_CALL = 20


class RateLimited(Exception):
    """Raised by a call that Slack answered with 429 / `ratelimited`; the sender waits."""

    def __init__(self, reason: str, retry_after: float | None):
        self.retry_after = retry_after
        super().__init__(reason)


@dataclass(slots=True, eq=False)
class _Op:
    run: Callable[[], Awaitable[None]]
    future: asyncio.Future[None]
    # Operations with the same key edit the same message: a waiting one may be replaced.
    key: Hashable | None
    final: bool


class ChannelSender:
    """The ordered, paced queue of one channel. Create once per channel; `aclose()` at the end."""

    def __init__(
        self,
        channel: str,
        *,
        min_interval: float,
        max_wait: float = DEFAULT_MAX_WAIT,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.channel = channel
        self._min_interval = min_interval
        self._max_wait = max_wait
        self._max_retry_after = max_retry_after
        self._clock = clock
        self._sleep = sleep
        self._queue: deque[_Op] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._next_at = 0.0
        self._closed = False
        self.coalesced = 0
        self.rate_limited = 0

    @property
    def pending(self) -> int:
        """Operations queued and not started yet."""
        return len(self._queue)

    def submit(
        self, run: Callable[[], Awaitable[None]], *, key: Hashable | None = None,
        final: bool = False,
    ) -> asyncio.Future[None]:
        """Queue `run`; the future resolves when it ran (or was replaced by a newer edit).

        Queues synchronously, so callers started in order are queued in that order.
        """
        if self._closed:
            raise RetryableDelivery(f"the Slack sender for {self.channel} is closed; "
                                    "the delivery stays in the outbox")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        op = _Op(run=run, future=future, key=key, final=final)
        if not self._replace_waiting(op):
            self._queue.append(op)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"slack:{self.channel}")
        return future

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one API call at the channel's pace, waiting out rate limits up to `max_wait`."""
        waited = 0.0
        refusals = 0
        while True:
            delay = self._next_at - self._clock()
            if delay > self._max_wait - waited:
                raise self._too_long(delay)
            if delay > 0:
                await self._sleep(delay)
                waited += delay
            try:
                result = await fn()
            except RateLimited as exc:
                self.rate_limited += 1
                refusals += 1
                # Clamped so that `inf` or 1e20 neither blocks the channel for good nor
                # leaves `_next_at` unreachable: above `max_wait` it goes back to the outbox.
                wait = clamp(exc.retry_after, self._max_retry_after)
                if wait is None:
                    wait = DEFAULT_RATE_LIMIT_WAIT
                wait = max(wait, self._min_interval, MIN_RATE_LIMIT_WAIT)
                self._next_at = self._clock() + wait
                if refusals >= MAX_RATE_LIMITS_PER_CALL:
                    raise self._too_long(wait) from None
                log.warning("Slack rate-limited channel %s (%s); waiting %.2f s",
                            self.channel, exc, wait)
                continue
            except BaseException:
                self._next_at = self._clock() + self._min_interval
                raise
            self._next_at = self._clock() + self._min_interval
            return result

    async def aclose(self) -> None:
        """Stop the worker; queued operations fail as retryable and stay in the outbox."""
        self._closed = True
        while self._queue:
            op = self._queue.popleft()
            if not op.future.done():
                op.future.set_exception(RetryableDelivery(
                    f"the Slack sender for {self.channel} closed before sending"))
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    def _replace_waiting(self, op: _Op) -> bool:
        if op.key is None:
            return False
        for index in range(len(self._queue) - 1, -1, -1):
            waiting = self._queue[index]
            if waiting.key != op.key:
                continue
            if waiting.final:
                return False
            self._queue[index] = op
            self.coalesced += 1
            if not waiting.future.done():
                waiting.future.set_result(None)
            log.debug("channel %s: a newer edit replaced a waiting one (%s)", self.channel, op.key)
            return True
        return False

    async def _work(self) -> None:
        while self._queue:
            op = self._queue.popleft()
            if op.future.done():  # the caller gave up (cancelled): nothing to report to
                continue
            try:
                await op.run()
            except asyncio.CancelledError:
                if not op.future.done():
                    op.future.set_exception(RetryableDelivery(
                        f"the Slack sender for {self.channel} closed while sending"))
                raise
            except Exception as exc:  # handed to the caller, who decides
                if not op.future.done():
                    op.future.set_exception(exc)
            else:
                if not op.future.done():
                    op.future.set_result(None)

    def _too_long(self, delay: float) -> RetryableDelivery:
        return RetryableDelivery(
            f"Slack asks to wait {delay:.1f} s before the next message to {self.channel}; "
            "the outbox will retry then",
            retry_after=delay,
        )
