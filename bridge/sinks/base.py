"""The interface every sink kind implements.

A sink sends one queued notification. It signals the outcome by raising: nothing on
success, `RetryableDelivery` (try again later, honouring `retry_after`) or
`PermanentDelivery` (dead-letter now). The outbox worker owns retries and bookkeeping.
"""

from __future__ import annotations

from typing import Protocol

from bridge.config.schema import SinkBase
from bridge.model import Delivery


class Sink(Protocol):
    config: SinkBase

    @property
    def name(self) -> str: ...

    async def send(self, delivery: Delivery) -> None:
        """Deliver `delivery.notification`; `delivery.id` is stable across retries."""

    async def aclose(self) -> None:
        """Stop background senders (per-channel queues); pending work stays in the outbox."""
