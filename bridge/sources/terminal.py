"""Terminal (telematics) syncs: the unfinished ones from `GET /syncs?status=…&limit=…`,
the tracked ones by id.

`GET /syncs` is "a log of all batch sync jobs for the current connection" (Terminal's
OpenAPI): it only grows, so a poll never pages through it. It lists the unfinished syncs
(`status=requested`, `status=in_progress`, paged with `cursor`/`next`), reads the newest
page of the log once (a sync requested and finished between two polls is seen there), and
looks up each tracked id the lists left out with `GET /syncs/{id}` (404 -> `missing`; a
failed lookup -> that sync unknown this poll). A poll's cost is bounded by the unfinished
and tracked syncs, not by the account's age. Requests carry the bearer token and the
`Connection-Token` of one connected account and are spaced for Terminal's 100 requests
per second per connection. `failureReason` becomes the job message.

Terminal also pushes syncs as Svix-signed webhooks: `sync.requested`, `sync.started`,
`sync.completed`, `sync.failed`, each `{id, type, timestamp, detail: {connection, sync}}`;
`parse_push` reads them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.config.schema import TerminalSource
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.auth import Clock
from bridge.sources.client import ClientSource, SourceClient
from bridge.sources.fanout import listed_plus_lookups
from bridge.sources.ratelimit import RatePacer, Sleep
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
# The statuses of a sync that is not finished: listed every poll, each with `status=`.
UNFINISHED = ("requested", "in_progress")
LIST_LIMIT = 100
# Of the newest syncs in the log: enough to see those that started and ended between polls.
RECENT_LIMIT = 50
# Per unfinished status: 1,000 unfinished syncs of one connection would be a runaway cursor.
MAX_PAGES = 10
# Terminal allows 100 requests per second per connection.
MIN_SPACING = 1 / 100
# The sync status each webhook event type announces, for an event whose sync has none.
EVENT_STATUSES = {
    "sync.requested": "requested",
    "sync.started": "in_progress",
    "sync.completed": "completed",
    "sync.failed": "failed",
}
_HINTS = {
    401: "Terminal rejected the credentials: check the bearer token and connection_token",
    403: "Terminal denied access: check that connection_token belongs to this API key",
}


class TerminalSyncs(ClientSource):
    """A `terminal` source."""

    lists_jobs = True

    def __init__(
        self, config: TerminalSource, session: aiohttp.ClientSession, *,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        connection_token = config.connection_token.get_secret_value()
        client = SourceClient.for_source(
            config, session, default_base_url=DEFAULT_BASE_URL,
            headers={"Connection-Token": connection_token}, hints=_HINTS,
            secrets=(connection_token,), clock=clock,
            pacer=RatePacer(min_spacing=MIN_SPACING, default_window=1.0, clock=clock,
                            sleep=sleep),
        )
        super().__init__(config, client, DEFAULT_STATES)

    async def poll(self, ids: Sequence[str]) -> PollResult:
        # Newest page first: the filtered lists, read after it, have the later word.
        listed = {job.id: job for job in await self._page({"limit": str(RECENT_LIMIT)})}
        for status in UNFINISHED:
            listed.update((job.id, job) for job in await self._list(status))
        return await listed_plus_lookups(self.name, list(listed.values()), ids, self._lookup)

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        jobs = []
        for i, event in enumerate(items_of(payload, "push")):
            sync = _sync_of(event, f"push[{i}]")
            if sync is not None:
                announced = EVENT_STATUSES.get(str(event.get("type")))
                jobs.append(self.job(sync, f"push[{i}].detail.sync", announced=announced))
        return jobs

    async def _list(self, status: str) -> list[JobStatus]:
        """Every sync of one status, following `next` (the unfinished ones are few)."""
        jobs: list[JobStatus] = []
        cursors: set[str] = set()
        params = {"status": status, "limit": str(LIST_LIMIT)}
        for _ in range(MAX_PAGES):
            body = await self._body(params)
            jobs.extend(self._results(body))
            following = self._next(body)
            if following is None:
                return jobs
            if following in cursors:
                raise drift("syncs pagination", "repeats a cursor")
            cursors.add(following)
            params = {**params, "cursor": following}
        raise drift("syncs pagination",
                    f"goes on past {MAX_PAGES} pages of syncs with status {status}")

    async def _page(self, params: dict[str, str]) -> list[JobStatus]:
        return self._results(await self._body(params))

    async def _body(self, params: dict[str, str]) -> dict[str, Any]:
        response = await self.client.get(self.client.url("/syncs"), params=params)
        return expect_object(response.body, "syncs response")

    def _results(self, body: dict[str, Any]) -> list[JobStatus]:
        items = expect_list(body.get("results"), "syncs response.results")
        return [self.job(expect_object(item, f"results[{i}]"), f"results[{i}]")
                for i, item in enumerate(items)]

    @staticmethod
    def _next(body: dict[str, Any]) -> str | None:
        following = body.get("next")
        if following is None or following == "":
            return None
        if not isinstance(following, str):
            raise drift("syncs response.next", "should be a cursor string or null")
        return following

    async def _lookup(self, sync_id: str) -> JobStatus | None:
        response = await self.client.get(self.client.url(f"/syncs/{quote(sync_id, safe='')}"),
                                         accept={404})
        if response.status == 404:
            return None
        return self.job(expect_object(response.body, "sync response"), "sync")

    def job(self, item: dict[str, Any], where: str, *, announced: str | None = None
            ) -> JobStatus:
        """One Terminal sync as an observation; `announced` is the status a webhook event's
        type implies, for a pushed sync that carries none."""
        raw = item.get("status", announced)
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
