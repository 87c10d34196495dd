"""Push sources (`kind = "push"`): systems that call `POST /v1/events/{source}` instead of
being polled. Polling them observes nothing; `parse_push` reads the pushed body, one object
or a list, with the source's `id`, `state`, `progress` and `message` JMESPath expressions.
Verifying the body's signature (`secret`) is the HTTP API's job, before it gets here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from bridge.config.schema import PushSource, SourceBase
from bridge.model import JobStatus, PollResult
from bridge.sources.http import CANONICAL_STATES, Extractor
from bridge.sources.mapping import StateMapper
from bridge.sources.ratelimit import RateBudget
from bridge.sources.shapes import items_of


class PushedJobs:
    """A `push` source."""

    lists_jobs = False

    def __init__(self, config: PushSource, session: aiohttp.ClientSession | None = None) -> None:
        self.config: SourceBase = config
        # Nothing is requested, so there is no rate-limit budget to report.
        self.budget: RateBudget | None = None
        self.extract = Extractor.of(config)
        self.states = StateMapper(config.name, CANONICAL_STATES, config.states)

    @property
    def name(self) -> str:
        return self.config.name

    async def poll(self, ids: Sequence[str]) -> PollResult:
        return PollResult(observations=())

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        return self.extract.jobs(items_of(payload, "push"), self.states, "push")
