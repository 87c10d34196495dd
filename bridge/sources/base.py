"""The interface every source kind implements, and the pieces they share.

A source turns one API call (or a few, when it pages) into a `PollResult`: the jobs it saw,
each mapped to a canonical state. It never decides what *happened*; that is detection's job.
A poll that fails raises `SourceUnavailable` (retry with backoff) or `SourceMisconfigured`
(the config is wrong); the pipeline then marks the source down and changes no job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

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
