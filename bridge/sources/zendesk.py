"""Zendesk job statuses: `GET /api/v2/job_statuses.json`, cursor-paged, plus `show_many`.

Zendesk lists only its last 100 jobs (sorted by completion, then creation, newest first),
so the tracked ids the list left out are looked up together with
`GET /api/v2/job_statuses/show_many.json?ids=a,b,…`, up to 100 ids a request: 250 such
jobs cost 3 requests, not 250. An id that answer leaves out has expired (statuses are
kept for a day) and is `missing`; a batch that fails leaves its ids unknown this poll.
`progress` is a count of `total` tasks and is normalised to a percent; a `completed` job
may still hold failed items in `results[]` (`status: "Failed"`, `success: false`, an
`error` with its `details`): they are counted in `failed_items`. A permanent-deletion job
reports `results` as one object, `{"success": false}` counting as one failed item.
Answers carry `X-Rate-Limit` / `X-Rate-Limit-Remaining` (per minute); requests slow down
before the budget runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bridge.config.schema import ZendeskSource
from bridge.errors import SourceUnavailable
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.auth import Clock
from bridge.sources.client import ClientSource, SourceClient
from bridge.sources.exchange import same_origin
from bridge.sources.fanout import for_each_id
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

DEFAULT_STATES: dict[str, JobState] = {
    "queued": JobState.PENDING,
    "working": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "killed": JobState.CANCELLED,
}
log = logging.getLogger(__name__)

PAGE_SIZE = 100
# `show_many` takes at most 100 ids a request.
SHOW_MANY_BATCH = 100
# A runaway cursor must not keep one poll going forever; 100 pages is 10,000 jobs.
MAX_PAGES = 100
_HINTS = {
    401: "Zendesk rejected the credentials: check the username (you@example.com/token) "
         "and the API token",
    403: "Zendesk denied access: the user behind the API token needs access to job statuses",
}


class ZendeskJobs(ClientSource):
    """A `zendesk` source."""

    lists_jobs = True

    def __init__(
        self, config: ZendeskSource, session: aiohttp.ClientSession, *,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        client = SourceClient.for_source(
            config, session, hints=_HINTS, clock=clock,
            pacer=RatePacer(default_window=60.0, clock=clock, sleep=sleep))
        super().__init__(config, client, DEFAULT_STATES)
        # Unfinished jobs seen earlier: looked up by id once they drop off the 100-job list,
        # so they are not taken for missing just because newer jobs pushed them out.
        self._unfinished: set[str] = set()

    async def poll(self, ids: Sequence[str]) -> PollResult:
        listed = await self._list()
        seen = {job.id for job in listed}
        extra = [i for i in dict.fromkeys([*ids, *sorted(self._unfinished)]) if i not in seen]
        found, unknown = await self._show_many(extra)
        found_ids = {job.id for job in found}
        result = PollResult(
            observations=[*listed, *found], complete=True, unknown=unknown,
            missing=frozenset(i for i in extra if i not in found_ids and i not in unknown))
        self._unfinished = {job.id for job in result.observations if not job.state.terminal}
        self._unfinished |= unknown
        return result

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        if isinstance(payload, dict) and "job_status" in payload:
            payload = payload["job_status"]
        elif isinstance(payload, dict) and "job_statuses" in payload:
            payload = expect_list(payload["job_statuses"], "job_statuses")
        return [self.job(item, f"push[{i}]") for i, item in enumerate(items_of(payload, "push"))]

    async def _list(self) -> list[JobStatus]:
        url: str = self.client.url("/api/v2/job_statuses.json")
        params: dict[str, str] | None = {"page[size]": str(PAGE_SIZE)}
        jobs: list[JobStatus] = []
        seen_pages: set[str] = set()
        for page in range(MAX_PAGES):
            response = await self.client.get(url, params=params)
            body = expect_object(response.body, "job_statuses response")
            items = expect_list(body.get("job_statuses"), "job_statuses response.job_statuses")
            for i, item in enumerate(items):
                jobs.append(self.job(expect_object(item, f"job_statuses[{i}]"),
                                     f"page {page + 1} job_statuses[{i}]"))
            following = self._next_page(body)
            if following is None:
                return jobs
            key = f"{following[0]}?{following[1]}"
            if key in seen_pages:
                raise drift("job_statuses pagination", "repeats a page cursor")
            seen_pages.add(key)
            url, params = following
        raise drift("job_statuses pagination", f"goes on past {MAX_PAGES} pages")

    def _next_page(self, body: dict[str, Any]) -> tuple[str, dict[str, str] | None] | None:
        """Where the next page is: the `after_cursor` against our own base URL (so a
        proxied base_url keeps working), else a same-host `links.next` / `next_page`."""
        meta = body.get("meta")
        links = body.get("links")
        if isinstance(meta, dict) and "has_more" in meta:
            if not meta.get("has_more"):
                return None
            cursor = meta.get("after_cursor")
            if isinstance(cursor, str) and cursor:
                params = {"page[size]": str(PAGE_SIZE), "page[after]": cursor}
                return self.client.url("/api/v2/job_statuses.json"), params
        link = links.get("next") if isinstance(links, dict) else body.get("next_page")
        if not isinstance(link, str) or not link:
            return None
        if not same_origin(link, self.client.base_url):
            raise drift("links.next", "points at another host; refusing to send credentials")
        return link, None

    async def _show_many(self, ids: list[str]) -> tuple[list[JobStatus], frozenset[str]]:
        """The statuses of `ids`, 100 a request, one request at a time (the per-minute
        budget is shared with the list); the ids of a batch that failed passingly come back
        as unknown (a misconfiguration is raised)."""
        batches = [ids[i:i + SHOW_MANY_BATCH] for i in range(0, len(ids), SHOW_MANY_BATCH)]

        async def one(batch: list[str]) -> list[JobStatus] | SourceUnavailable:
            try:
                return await self._show_batch(batch)
            except SourceUnavailable as exc:
                return exc

        found: list[JobStatus] = []
        unknown: set[str] = set()
        for batch, answer in zip(batches, await for_each_id(batches, one, limit=1),
                                 strict=True):
            if isinstance(answer, SourceUnavailable):
                log.warning("source %s: show_many of %d jobs failed this poll (they are "
                            "unknown until the next poll): %s", self.name, len(batch), answer)
                unknown.update(batch)
            else:
                wanted = set(batch)
                found.extend(job for job in answer if job.id in wanted)
        return found, frozenset(unknown)

    async def _show_batch(self, batch: list[str]) -> list[JobStatus]:
        url = self.client.url("/api/v2/job_statuses/show_many.json")
        response = await self.client.get(url, params={"ids": ",".join(batch)})
        body = expect_object(response.body, "show_many response")
        items = expect_list(body.get("job_statuses"), "show_many response.job_statuses")
        return [self.job(expect_object(item, f"show_many job_statuses[{i}]"),
                         f"show_many job_statuses[{i}]") for i, item in enumerate(items)]

    def job(self, item: dict[str, Any], where: str) -> JobStatus:
        """One Zendesk job status as an observation."""
        raw = item.get("status")
        if not isinstance(raw, str):
            raise drift(f"{where}.status", "is missing" if raw is None else "should be a string")
        results = item.get("results")
        return JobStatus(
            id=require_str_or_int(item, "id", where),
            state=self.states(raw),
            raw_state=raw,
            progress=percent(optional_number(item, "progress", where),
                             optional_number(item, "total", where)),
            message=optional_str(item, "message", where),
            url=optional_str(item, "url", where),
            fields=item,
            failed_items=count_failed(results),
        )


def percent(done: float | None, total: float | None) -> float | None:
    """Zendesk's task count as a percent; None when either is unknown or total is 0."""
    if done is None or total is None or not total > 0:
        return None
    value = percent_value(max(0.0, done) * 100.0 / total)
    return round(value, 2) if value is not None else None


def count_failed(results: Any) -> int | None:
    """Results that failed: `status: "Failed"`, `success: false`, or a non-empty `error`
    (with its `details`) or `errors`. A permanent deletion reports one object for the whole
    job: `{"success": false}` is one failed item. None when there are no results."""
    if isinstance(results, dict):
        return 1 if _failed(results) else 0
    if not isinstance(results, list):
        return None
    return sum(1 for result in results if isinstance(result, dict) and _failed(result))


def _failed(result: dict[str, Any]) -> bool:
    status = result.get("status")
    if isinstance(status, str) and status.lower() == "failed":
        return True
    if result.get("success") is False:
        return True
    return any(result.get(key) not in (None, "", [], {}) for key in ("errors", "error"))
