"""One Slack channel's sender: the most urgent first, each job in order, within Slack's budgets.

Every send to a channel is an operation (`Op`) submitted here. Operations of one job (a
`lane`) run one after another, in submission order; operations of different jobs run side
by side, and every API call they make waits at the gate of its method's budget
(`slack_budget.Gate`: `chat.postMessage` per channel, `chat.update` per workspace), which
lets the most urgent waiting call in first. So a failure queued behind 50 "job started"
posts goes out next, edits never wait for posts, and a 429 on one method pauses only that
method's gate.

Coalescing: while an operation has not made its first call yet, a newer one with the same
`key` (the same job's message) takes its place: the waiting operation's payload becomes the
newer one, so a root post that is still waiting goes out once with the latest state (never
a post followed by an edit), and waiting edits collapse into the latest. The replaced
submission counts as delivered. An operation marked `final` (a terminal state) is never
replaced; later ones queue behind it.

Overflow (`overflow_after`): when the channel's budget cannot keep up, an urgent operation
(one submitted with `overflow=True`) whose first call would wait longer than
`overflow_after` at its gate (counting the `age` it was submitted with: how long it waited
in the outbox), or has waited that long, is handed to `on_overflow` (the Slack
sink names it in the channel's roll-up message, `slack_rollup`); its own
call still goes out when the budget allows. It is `parked` meanwhile: shown, waiting only for
budget, and from then on as the least urgent (`PARKED_RANK`), in arrival order, so that what
nobody has seen yet goes first and no "job started" post starves behind a stream of shown
failures (its job's own failure may be waiting in the outbox behind it). A newer send that
replaces a parked operation's payload is handed over again, so the
roll-up shows the latest state. When no parked operation is left, `on_drained` is called.

A 429 is waited out and the call repeated; a wait longer than `max_wait` hands the delivery
back to the outbox (RetryableDelivery) rather than holding its lease (a Retry-After of `inf`
or 1e20 is clamped first and takes that path).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from bridge.errors import RetryableDelivery
from bridge.retry_after import DEFAULT_MAX_RETRY_AFTER, clamp
from bridge.sinks.slack_budget import Budget, Clock, Gate, Sleep, TokenBucket

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")

# Slack always sends Retry-After with a 429; this is for Slack-compatible servers that do not.
DEFAULT_RATE_LIMIT_WAIT = 1.0
DEFAULT_MAX_WAIT = 30.0
# A 429 asking to wait 0 s (or a hair more) with no pacing would repeat the call in a tight
# loop: every 429 waits at least this, and a call answered 429 this many times in a row goes
# back to the outbox.
MIN_RATE_LIMIT_WAIT = 0.05
MAX_RATE_LIMITS_PER_CALL = 20
# Once the roll-up shows an operation, its own calls wait like the least urgent ones, in
# arrival order: what nobody has seen yet goes first, and nothing waits behind it for good.
PARKED_RANK = 2


class RateLimited(Exception):
    """Raised by a call that Slack answered with 429 / `ratelimited`; the sender waits."""

    def __init__(self, reason: str, retry_after: float | None):
        self.retry_after = retry_after
        super().__init__(reason)


@dataclass(slots=True, eq=False)
class Op(Generic[P]):
    """One queued send. `payload` is what it sends; a newer submission may replace it until
    the operation's first call (`started`)."""

    run: Callable[[Op[P]], Awaitable[None]]
    payload: P
    future: asyncio.Future[None]
    lane: Hashable
    # Operations with the same key edit the same message: a waiting one may be replaced.
    key: Hashable | None
    final: bool
    rank: int
    seq: int
    started: bool = False
    # How many newer submissions took this operation's place.
    replaced: int = 0
    # Urgent enough to be shown in a roll-up when it would wait too long (`overflow_after`).
    overflow: bool = False
    # Handed to `on_overflow`: shown there, waiting only for its own call's budget.
    overflowed: bool = False
    # The gate its first call waits at (None before it gets there).
    gate: Gate | None = None
    # Seconds it had waited before it was submitted (in the outbox, say): part of its wait.
    age: float = 0.0


class ChannelSender(Generic[P]):
    """The operations of one channel. Create once per channel; `aclose()` at the end.

    `gate_of(method)` gives the gate of a method's budget (shared with other senders that
    spend it); a method it has none for gets a gate of its own here, paced at
    `min_interval` (0: unpaced)."""

    def __init__(
        self,
        channel: str,
        *,
        min_interval: float = 0.0,
        gate_of: Callable[[str], Gate | None] | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        overflow_after: float = 0.0,
        on_overflow: Callable[[Op[P]], None] | None = None,
        on_drained: Callable[[], None] = lambda: None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ):
        self.channel = channel
        # 0 or no `on_overflow`: operations wait for their budget, however long.
        self._overflow_after = overflow_after if on_overflow is not None else 0.0
        self._on_overflow = on_overflow
        self._on_drained = on_drained
        self._min_interval = min_interval
        self._gate_of = gate_of
        self._gates: dict[str, Gate] = {}
        self._max_wait = max_wait
        self._max_retry_after = max_retry_after
        self._clock = clock
        self._sleep = sleep
        self._lanes: dict[Hashable, deque[Op[P]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count()
        self._closed = False
        self.coalesced = 0
        self.rate_limited = 0
        self.overflowed = 0

    @property
    def pending(self) -> int:
        """Operations submitted that have not made their first call yet."""
        return sum(1 for op in self._waiting())

    @property
    def parked(self) -> int:
        """Operations handed to `on_overflow` that have not made their first call yet."""
        return sum(1 for op in self._waiting() if op.overflowed)

    @property
    def unshown(self) -> int:
        """Operations that may overflow, waiting, that no roll-up shows yet."""
        return sum(1 for op in self._waiting() if op.overflow and not op.overflowed)

    def _waiting(self) -> Iterator[Op[P]]:
        return (op for lane in self._lanes.values() for op in lane if not op.started)

    def gate(self, method: str) -> Gate:
        """The gate `method`'s calls wait at."""
        gate = self._gates.get(method)
        if gate is None and self._gate_of is not None:
            gate = self._gate_of(method)
            if gate is not None:
                self._gates[method] = gate
        if gate is None:
            per_second = 1 / self._min_interval if self._min_interval > 0 else math.inf
            gate = self._gates[method] = Gate(
                name=f"{method} to {self.channel}",
                bucket=TokenBucket(Budget(per_second=per_second), self._clock()),
                clock=self._clock, sleep=self._sleep)
        return gate

    def submit(
        self, run: Callable[[Op[P]], Awaitable[None]], payload: P, *,
        lane: Hashable | None = None, key: Hashable | None = None, final: bool = False,
        rank: int = 1, overflow: bool = False, age: float = 0.0,
    ) -> asyncio.Future[None]:
        """Queue `run(op)`; the future resolves when it ran (or was replaced by a newer one).

        Queues synchronously, so callers started in order are queued in that order. `lane`
        (None: a lane of its own) keeps one job's operations in order; `rank` (0 first) is
        the urgency its calls wait at the gates with; `overflow`: it may be handed to
        `on_overflow` when its first call would wait longer than `overflow_after`, counting
        the `age` it comes with (seconds it already waited before, in the outbox).
        """
        if self._closed:
            raise RetryableDelivery(f"the Slack sender for {self.channel} is closed; "
                                    "the delivery stays in the outbox")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane_key: Hashable = lane if lane is not None else object()
        op = Op(run=run, payload=payload, future=future, lane=lane_key, key=key, final=final,
                rank=rank, seq=next(self._seq), overflow=overflow, age=max(0.0, age))
        queue = self._lanes.get(lane_key)
        if queue is not None and self._replace_waiting(queue, op):
            return future
        if queue is None:
            queue = self._lanes[lane_key] = deque()
        queue.append(op)
        if len(queue) == 1:
            self._start(op)
        return future

    async def call(self, fn: Callable[[], Awaitable[T]], *, method: str = "chat.postMessage",
                   op: Op[P] | None = None, rank: int = 1) -> T:
        """Run one API call of `method` when its gate lets it in (the op's urgency decides
        who goes first; `rank` that of a call made outside an operation), waiting out rate
        limits up to `max_wait`."""
        gate = self.gate(method)
        ticket: _Ticket | Op[P] = op if op is not None else _Ticket(rank=rank,
                                                                   seq=next(self._seq))
        refusals = 0
        while True:
            if op is not None and not op.started and self._overflow_after > 0:
                await self._acquire_or_overflow(gate, op)
            else:
                await gate.acquire(ticket, max_wait=self._max_wait)
            if op is not None and not op.started:
                op.started = True  # from here on its payload is what Slack got
                if op.overflowed and self.parked == 0:
                    self._on_drained()
            try:
                return await fn()
            except RateLimited as exc:
                self.rate_limited += 1
                refusals += 1
                # Clamped so that `inf` or 1e20 neither blocks the gate for good nor leaves
                # it paused out of reach: above `max_wait` it goes back to the outbox.
                wait = clamp(exc.retry_after, self._max_retry_after)
                if wait is None:
                    wait = DEFAULT_RATE_LIMIT_WAIT
                wait = max(wait, MIN_RATE_LIMIT_WAIT)
                gate.pause(wait)
                if wait > self._max_wait or refusals >= MAX_RATE_LIMITS_PER_CALL:
                    raise gate.too_long(wait) from None
                log.warning("Slack rate-limited %s (%s); waiting %.2f s", gate.name, exc, wait)

    async def _acquire_or_overflow(self, gate: Gate, op: Op[P]) -> None:
        """Wait at the gate; overflow the op if it would wait, or has waited, too long."""
        op.gate = gate
        granted = gate.enter(op, max_wait=self._max_wait)
        try:
            self._maybe_overflow(op)
            # It has waited `age` already; after that, every `overflow_after` it is looked at.
            slice_ = max(MIN_RATE_LIMIT_WAIT, self._overflow_after - op.age)
            while not granted.done():
                timer = asyncio.ensure_future(self._sleep(slice_))
                slice_ = self._overflow_after
                try:
                    await asyncio.wait({granted, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
                if not granted.done():
                    self._maybe_overflow(op, waited=True)
            granted.result()
        finally:
            if not granted.done():  # cancelled while waiting: leave the line
                granted.cancel()

    def _maybe_overflow(self, op: Op[P], *, waited: bool = False) -> None:
        if not op.overflow or op.overflowed or op.started or op.gate is None:
            return
        # A call that can go now goes now, however late it is; else its whole wait counts.
        expected = op.gate.expected_wait(op)
        if waited or (expected > 0 and op.age + expected > self._overflow_after):
            op.overflowed = True
            op.rank = PARKED_RANK
            self.overflowed += 1
            assert self._on_overflow is not None
            self._on_overflow(op)

    async def aclose(self) -> None:
        """Stop; operations not started fail as retryable and stay in the outbox."""
        self._closed = True
        for lane in self._lanes.values():
            for op in lane:
                if not op.future.done():
                    op.future.set_exception(RetryableDelivery(
                        f"the Slack sender for {self.channel} closed before sending"))
        self._lanes.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _replace_waiting(self, queue: deque[Op[P]], op: Op[P]) -> bool:
        if op.key is None:
            return False
        for waiting in reversed(queue):
            if waiting.key != op.key:
                continue
            if waiting.final or waiting.started:
                return False
            replaced = waiting.future
            waiting.run, waiting.payload, waiting.future = op.run, op.payload, op.future
            waiting.final = op.final
            waiting.rank = PARKED_RANK if waiting.overflowed else min(waiting.rank, op.rank)
            waiting.overflow = waiting.overflow or op.overflow
            waiting.replaced += 1
            self.coalesced += 1
            if not replaced.done():
                replaced.set_result(None)
            log.debug("channel %s: a newer send replaced a waiting one (%s)", self.channel,
                      op.key)
            if waiting.overflowed:
                assert self._on_overflow is not None
                self._on_overflow(waiting)  # the roll-up shows the newer state
            else:
                self._maybe_overflow(waiting)  # now urgent, say, behind a long line
            return True
        return False

    def _start(self, op: Op[P]) -> None:
        task = asyncio.create_task(self._run_lane(op.lane), name=f"slack:{self.channel}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, lane: Hashable) -> None:
        """Run a lane's operations in order until it is empty."""
        while (queue := self._lanes.get(lane)):
            op = queue[0]
            if not op.future.done():  # done: the caller gave up (cancelled)
                await self._run_one(op)
            if queue and queue[0] is op:
                queue.popleft()
            if not queue:
                self._lanes.pop(lane, None)

    async def _run_one(self, op: Op[P]) -> None:
        try:
            await op.run(op)
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


@dataclass(frozen=True, slots=True)
class _Ticket:
    """The place in line of a call made outside an operation."""

    rank: int
    seq: int
