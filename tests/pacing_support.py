"""An injected clock and sleep for rate-limit pacing: waits are recorded and pass at once,
so tests see what a source would wait without waiting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FakeTime:
    now: float = 1000.0
    waits: list[float] = field(default_factory=list)
    # What else passes while we wait (a simulator's rate-limit window resetting).
    after_sleep: Callable[[], None] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.now += seconds
        if self.after_sleep is not None:
            self.after_sleep()

    def advance(self, seconds: float) -> None:
        self.now += seconds
