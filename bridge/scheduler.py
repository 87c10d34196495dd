"""Polling schedule: one APScheduler job per source. The only module that imports APScheduler.

Each source polls at its `interval` with a little jitter, never overlapping itself
(`max_instances=1`, `coalesce=True`). A source that is down backs off: polls are skipped until
`backoff_delay` has passed (exponential, capped, never sooner than the API's Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bridge.logs import for_source

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)

def backoff_delay(failures: int, interval: timedelta, retry_after: float | None) -> timedelta:
    """How long to wait before polling a down source again after `failures` failed polls."""
    if failures <= 0:
        return timedelta(0)
    doubled: timedelta = interval * 2 ** min(failures - 1, 20)
    delay = min(doubled, max(MAX_BACKOFF, interval))
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


class PollScheduler:
    """Runs `poll(name)` for every source at its interval, with backoff while it is down."""

    def __init__(
        self,
        intervals: Mapping[str, timedelta],
        poll: Callable[[str], Awaitable[tuple[bool, float | None]]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._intervals = dict(intervals)
        self._poll = poll
        self._clock = clock
        # APScheduler logs every run at INFO; ours say what matters (polls, backoff).
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._failures: dict[str, int] = dict.fromkeys(intervals, 0)
        self._not_before: dict[str, datetime] = {}
        self._stopped = False
        self._paused = False
        self._extra: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return not self._stopped and bool(self._scheduler.running)

    def start(self) -> None:
        now = self._clock()
        for name, interval in self._intervals.items():
            self._scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=interval.total_seconds(),
                                jitter=min(interval.total_seconds() * 0.1, 5.0) or None),
                args=[name],
                id=name,
                name=f"poll:{name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now,
            )
        self._scheduler.start()

    def pause(self) -> None:
        """Start no new poll; polls under way go on."""
        if not self._stopped and self._scheduler.running:
            self._scheduler.pause()
        self._paused = True

    def stop(self) -> None:
        if not self._stopped and self._scheduler.running:
            self._stopped = True
            self._scheduler.shutdown(wait=False)
        for task in self._extra:
            task.cancel()

    def poll_soon(self, name: str) -> None:
        """Poll a source now (after `bridge watch` added a job id), backoff permitting.

        A separate task rather than moving the scheduled run: a poll already under way would
        make APScheduler skip it; the pipeline's per-source lock queues it instead."""
        if self._stopped or self._paused or name not in self._intervals:
            return
        task = asyncio.get_running_loop().create_task(self._run(name))
        self._extra.add(task)
        task.add_done_callback(self._extra.discard)

    async def _run(self, name: str) -> None:
        not_before = self._not_before.get(name)
        if not_before is not None and self._clock() < not_before:
            for_source(log, name).debug("source %s backing off until %s", name,
                                        not_before.isoformat())
            return
        try:
            ok, retry_after = await self._poll(name)
        except Exception:  # the schedule must survive any bug in one poll
            for_source(log, name).exception("poll of %s crashed; will retry", name)
            ok, retry_after = False, None
        if ok:
            self._failures[name] = 0
            self._not_before.pop(name, None)
            return
        self._failures[name] = self._failures.get(name, 0) + 1
        delay = backoff_delay(self._failures[name], self._intervals[name], retry_after)
        self._not_before[name] = self._clock() + delay
        for_source(log, name).info("source %s: next poll in %.1fs (failure %d)", name,
                                   delay.total_seconds(), self._failures[name])
