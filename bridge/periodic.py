"""A piece of work repeated every few seconds in a task of its own, until stopped.

The group flusher, the silence reminders and the poll counts each tick in the background;
one failed tick is logged and the next one tries again, so a store that is down for a
moment costs a tick, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    """`work` every `seconds` (first at once, or after one wait with `wait_first`)."""

    def __init__(self, name: str, seconds: float, work: Callable[[], Awaitable[object]], *,
                 retry_on: tuple[type[Exception], ...], failed: str, log: logging.Logger,
                 wait_first: bool = False):
        self._name = name
        self._seconds = seconds
        self._work = work
        self._retry_on = retry_on
        self._failed = failed
        self._log = log
        self._wait_first = wait_first
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if self._wait_first:
            await asyncio.sleep(self._seconds)
        while True:
            try:
                await self._work()
            except self._retry_on as exc:
                self._log.warning("%s: %s", self._failed, exc)
            await asyncio.sleep(self._seconds)
