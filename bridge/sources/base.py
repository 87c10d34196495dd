"""The interface every source kind implements, and the pieces they share.

A source turns one API call (or a few, when it pages) into a `PollResult`: the jobs it saw,
each mapped to a canonical state. It never decides what *happened*; that is detection's job.
A poll that fails raises `SourceUnavailable` (retry with backoff) or `SourceMisconfigured`
(the config is wrong); the pipeline then marks the source down and changes no job.
A source that requests through a `SourceClient` may also expose `budget` (its
`RateBudget`): `/metrics` reports it; a kind without one simply has no budget series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from bridge.config.schema import SourceBase
from bridge.model import JobState, JobStatus, PollResult


class Source(Protocol):
    """One configured source, ready to poll."""

    config: SourceBase
    # True when the API lists jobs (a poll sees every live job, so absence means missing);
    # False for single-id APIs that poll only `ids` (config ids plus watches).
    lists_jobs: bool

    @property
    def name(self) -> str: ...

    async def poll(self, ids: Sequence[str]) -> PollResult:
        """Observe the source's jobs. `ids` are the unfinished job ids bridge tracks by id."""

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        """Turn a pushed JSON body (POST /v1/events/{source}) into observations.

        Raises SourceUnavailable with a readable reason when the body has the wrong shape.
        """


def map_state(raw: object, defaults: Mapping[str, JobState],
              overrides: Mapping[str, JobState]) -> JobState:
    """Canonical state of a raw API value: the source's `states` table first, then the kind's
    own mapping; anything else is `unknown` (the caller logs a warning once)."""
    key = str(raw)
    if key in overrides:
        return overrides[key]
    return defaults.get(key, JobState.UNKNOWN)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceCapabilities:
    """What a source kind does, declared once in its registry entry; the rest of bridge
    asks these instead of comparing kind names."""

    # Polled on `interval` by the scheduler (False: it only receives pushes).
    polled: bool = True
    # Takes `POST /v1/events/{source}` signed with its `secret` (`SourceBase.push_secret`).
    accepts_push: bool = False


ConfigT = TypeVar("ConfigT", bound=SourceBase)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceKind(Generic[ConfigT]):
    """One entry of `bridge.sources.SOURCE_KINDS`: a kind's config model, the factory that
    turns a validated table into a ready `Source`, and what the kind can do."""

    model: type[ConfigT]
    factory: Callable[[ConfigT, aiohttp.ClientSession], Source]
    capabilities: SourceCapabilities = SourceCapabilities()
