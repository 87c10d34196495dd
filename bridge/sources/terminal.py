"""Terminal (telematics) syncs: `GET /syncs` paged with `cursor`/`next`, plus per-id lookups.

Requests carry the bearer token and the `Connection-Token` header of one connected
account. A tracked id the list leaves out is looked up with `GET /syncs/{id}` (404 ->
`missing`). `failureReason` becomes the job message. Terminal can also push syncs to us as
webhooks (`{"type": "sync.completed", "detail": {"sync": {...}}}`); `parse_push` reads them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.config.schema import SourceBase, TerminalSource
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.auth import Clock
from bridge.sources.client import SourceClient
from bridge.sources.fanout import listed_plus_lookups
from bridge.sources.mapping import StateMapper
from bridge.sources.shapes import (
    drift,
    expect_list,
    expect_object,
    items_of,
    optional_number,
    optional_str,
    percent_value,
    require_str_or_int,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.withterminal.com/tsp/v1"
DEFAULT_STATES: dict[str, JobState] = {
    "requested": JobState.PENDING,
    "in_progress": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
}
MAX_PAGES = 100
_HINTS = {
    401: "Terminal rejected the credentials: check the bearer token and connection_token",
    403: "Terminal denied access: check that connection_token belongs to this API key",
}


class TerminalSyncs:
    """A `terminal` source."""

    lists_jobs = True

    def __init__(
        self, config: TerminalSource, session: aiohttp.ClientSession, *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config: SourceBase = config
        connection_token = config.connection_token.get_secret_value()
        self.client = SourceClient.for_source(
            config, session, default_base_url=DEFAULT_BASE_URL,
            headers={"Connection-Token": connection_token}, hints=_HINTS,
            secrets=(connection_token,), clock=clock,
        )
        self.states = StateMapper(config.name, DEFAULT_STATES, config.states)

    @property
    def name(self) -> str:
        return self.config.name

    async def poll(self, ids: Sequence[str]) -> PollResult:
        return await listed_plus_lookups(await self._list(), ids, self._lookup)

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        jobs = []
        for i, event in enumerate(items_of(payload, "push")):
            sync = _sync_of(event, f"push[{i}]")
            if sync is not None:
                jobs.append(self.job(sync, f"push[{i}].detail.sync"))
        return jobs

    async def _list(self) -> list[JobStatus]:
        url = self.client.url("/syncs")
        jobs: list[JobStatus] = []
        cursor: str | None = None
        cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            response = await self.client.get(url, params={"cursor": cursor} if cursor else None)
            body = expect_object(response.body, "syncs response")
            for i, item in enumerate(expect_list(body.get("results"), "syncs response.results")):
                jobs.append(self.job(expect_object(item, f"results[{i}]"), f"results[{i}]"))
            following = body.get("next")
            if following is None or following == "":
                return jobs
            if not isinstance(following, str):
                raise drift("syncs response.next", "should be a cursor string or null")
            if following in cursors:
                raise drift("syncs pagination", "repeats a cursor")
            cursors.add(following)
            cursor = following
        raise drift("syncs pagination", f"goes on past {MAX_PAGES} pages")

    async def _lookup(self, sync_id: str) -> JobStatus | None:
        response = await self.client.get(self.client.url(f"/syncs/{quote(sync_id, safe='')}"),
                                         accept={404})
        if response.status == 404:
            return None
        return self.job(expect_object(response.body, "sync response"), "sync")

    def job(self, item: dict[str, Any], where: str) -> JobStatus:
        """One Terminal sync as an observation."""
        raw = item.get("status")
        if not isinstance(raw, str):
            raise drift(f"{where}.status", "is missing" if raw is None else "should be a string")
        return JobStatus(
            id=require_str_or_int(item, "id", where),
            state=self.states(raw),
            raw_state=raw,
            progress=percent_value(optional_number(item, "progress", where)),
            message=optional_str(item, "failureReason", where),
            fields=item,
        )


def _sync_of(event: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The sync a webhook event carries; None for events about something else. A bare
    sync object (no `type`) is accepted too, for relays that forward only the sync."""
    kind = event.get("type")
    if kind is None and "status" in event:
        return event
    if not isinstance(kind, str):
        raise drift(f"{where}.type", "is missing: expected a Terminal webhook event")
    if not kind.startswith("sync."):
        log.debug("ignoring pushed Terminal event of type %s", kind)
        return None
    detail = expect_object(event.get("detail"), f"{where}.detail")
    return expect_object(detail.get("sync"), f"{where}.detail.sync")
