"""The interface every sink kind implements, and the shape of its registry entry.

A sink sends one queued notification. It signals the outcome by raising: nothing on
success, `RetryableDelivery` (try again later, honouring `retry_after`) or
`PermanentDelivery` (dead-letter now). The outbox worker owns retries and bookkeeping; it
asks a sink's `SinkCapabilities`, never its kind, how to hand it a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar, runtime_checkable

import aiohttp

from bridge.config.schema import SinkBase
from bridge.model import Delivery
from bridge.store.base import Store


class Sink(Protocol):
    config: SinkBase

    @property
    def name(self) -> str: ...

    async def send(self, delivery: Delivery) -> None:
        """Deliver `delivery.notification`; `delivery.id` is stable across retries."""

    async def aclose(self) -> None:
        """Stop background senders (per-channel queues); pending work stays in the outbox."""


@runtime_checkable
class HasRoom(Protocol):
    """A sink that queues rows itself (`orders_itself`) and can say, while a batch is still
    being sent, that it would take the next one now (Slack: every urgent send waiting is
    already shown in the channel's roll-up, so the next failures should not wait in the
    outbox for the waiting ones' own posts)."""

    def has_room(self) -> bool: ...


class PayloadShape(StrEnum):
    """What a notification's payload holds for a sink, so rendering asks the sink's
    capabilities rather than its kind."""

    # `text`: the rule's template as plain text (`*.json.j2` ones JSON-escaped).
    TEXT = "text"
    # `text` in Slack mrkdwn (values escaped for it), plus `blocks` from a Block Kit
    # (`*.blocks.j2`) template.
    SLACK = "slack"
    # `text`, plus `body`: the sink's `body` template, or the default envelope (contract
    # section 6) built through the webhook catalog.
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkCapabilities:
    """How the delivery worker treats a sink. The default is a plain request per row."""

    # The sink queues each `send` in order itself, synchronously, and merges queued edits
    # of one message: the worker hands it a whole batch at once (so edits arrive together)
    # instead of sending each job's rows one after another.
    orders_itself: bool = False
    # Each job has one message that later notifications edit: an earlier edit that failed
    # after a later one went through is stale, and counts as delivered (superseded) rather
    # than being retried over the newer state. Terminal notifications are never superseded.
    # Only matters with `orders_itself`: otherwise a failed row holds its job's later rows
    # back, so no later edit can overtake it.
    edits_in_place: bool = False
    # What the render stage puts in the payload for this sink (see PayloadShape).
    payload: PayloadShape = PayloadShape.TEXT
    # Rows claimed per batch (None: the worker's default). A sink paced far below the
    # worker's speed (Slack) takes few at a time, so the backlog waits in the outbox, where
    # the claim takes the most urgent job first and pulls its earlier rows along, instead
    # of in the sink behind rows already handed over.
    claim_batch: int | None = None


ConfigT = TypeVar("ConfigT", bound=SinkBase)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkKind(Generic[ConfigT]):
    """One entry of `bridge.sinks.SINK_KINDS`: the kind's config model, the factory that
    builds a sink from a validated table (on the shared session, with the state store for
    sinks that remember messages), and its capabilities, fixed or read from the table."""

    model: type[ConfigT]
    factory: Callable[[ConfigT, aiohttp.ClientSession, Store], Sink]
    capabilities: SinkCapabilities | Callable[[ConfigT], SinkCapabilities] = SinkCapabilities()

    def capabilities_of(self, config: ConfigT) -> SinkCapabilities:
        if isinstance(self.capabilities, SinkCapabilities):
            return self.capabilities
        return self.capabilities(config)
