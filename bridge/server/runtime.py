"""What the HTTP server needs from a running bridge. `bridge.app.Bridge` implements it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from bridge.config.schema import Config, SourceBase
from bridge.metrics import Metrics
from bridge.model import Event, SourceHealth
from bridge.sinks.base import Sink
from bridge.sources.base import Source, SourceCapabilities
from bridge.store.base import Store
from bridge.store.poll_buckets import PollBucket


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceView:
    """A source as the dashboard and /v1 API show it (never its secrets)."""

    config: SourceBase
    capabilities: SourceCapabilities
    lists_jobs: bool
    health: SourceHealth | None


class Runtime(Protocol):
    config: Config
    store: Store
    metrics: Metrics
    # The shared HTTP session (Slack calls made for button presses).
    session: aiohttp.ClientSession

    @property
    def ready(self) -> bool:
        """Config loaded and the scheduler running."""

    async def sources(self) -> Sequence[SourceView]: ...

    async def poll_buckets(self, since: datetime) -> list[PollBucket]:
        """Every source's polls per 5-minute bucket from `since` on, from the store (so
        every instance's, on a shared store), this instance's latest included."""

    def source(self, name: str) -> Source:
        """The running source object (KeyError: unknown), for actions on its API (JTL)."""

    def sink(self, name: str) -> Sink:
        """The running sink object (KeyError: unknown): a Slack press is shown through its
        sender, within its budgets."""

    async def watch(self, source: str, job_id: str) -> bool:
        """Track a job id (KeyError: unknown source). False if it was already tracked."""

    async def unwatch(self, source: str, job_id: str) -> bool: ...

    async def push(self, source: str, payload: Any) -> Sequence[Event]:
        """Feed a pushed observation through detection (KeyError: unknown source;
        SourceUnavailable: the body has the wrong shape). Returns the events it produced."""

    async def retry_deliveries(self, delivery_id: str | None) -> int: ...

    async def drop_deliveries(self, delivery_id: str | None) -> int: ...
