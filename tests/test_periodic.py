"""Background ticks (group flushes, silence reminders, poll counts): a failed tick is logged
and the next one runs; stop ends the loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.errors import StoreError
from bridge.periodic import Periodic

log = logging.getLogger("test_periodic")


async def test_a_failed_tick_is_logged_and_the_next_one_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    ticks: list[int] = []
    third = asyncio.get_running_loop().create_future()

    async def work() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise StoreError("database is locked")
        if len(ticks) == 3 and not third.done():
            third.set_result(None)

    periodic = Periodic("t", 0.001, work, retry_on=(StoreError,), failed="ticking failed",
                        log=log)
    periodic.start()
    await asyncio.wait_for(third, timeout=30)
    await periodic.stop()
    assert "ticking failed: database is locked" in caplog.text
    after_stop = len(ticks)
    await asyncio.sleep(0.01)
    assert len(ticks) == after_stop


async def test_wait_first_runs_nothing_before_the_first_wait() -> None:
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    periodic = Periodic("t", 3600, work, retry_on=(StoreError,), failed="x", log=log,
                        wait_first=True)
    periodic.start()
    await asyncio.sleep(0.01)
    await periodic.stop()
    assert ran == []
