"""Voyado eSales imports: `GET /api/admin/{api_version}/import/status?id=` for each
tracked id.

The API has no list endpoint, so only ids from config, `bridge watch` or `POST /v1/watches`
are polled (`lists_jobs = False`). `base_url` is either host form: the older
`https://{cluster-id}.api.esales.apptus.cloud` or the current Voyado Elevate
`https://{cluster-id}.elevate-api.cloud` (the v3 admin API reaches end of life on
2026-12-31; `api_version` names the path's version, default `v3`). Import ids are 19-digit
numbers, sent by the current API as JSON numbers: they stay strings end to end (the
observation keeps the id we asked for, never a number re-read from JSON). `reason: null`
is no message. Status `NOT_FOUND` puts the id in `missing`; HTTP 404 means the *cluster*
in base_url does not exist (or no longer answers this API version), a configuration
error, never a vanished import. A lookup that fails passingly leaves that import unknown
this poll; the poll fails only when every lookup failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bridge.config.schema import EsalesSource
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.auth import Clock, StaticAuth
from bridge.sources.client import ClientSource, SourceClient
from bridge.sources.fanout import poll_by_id
from bridge.sources.ratelimit import RatePacer, Sleep
from bridge.sources.shapes import drift, expect_object, items_of, optional_str, require_str_or_int

NOT_FOUND = "NOT_FOUND"
DEFAULT_STATES: dict[str, JobState] = {
    "WAITING": JobState.PENDING,
    "BLOCKED": JobState.BLOCKED,
    "IN_PROGRESS": JobState.RUNNING,
    "SUCCESS": JobState.SUCCEEDED,
    "FAILURE": JobState.FAILED,
    "ABORTED": JobState.CANCELLED,
}
_HINTS = {
    401: "eSales rejected the API key: check api_key",
    403: "eSales denied access: check that api_key belongs to this cluster",
    404: "cluster not found: check base_url (https://{cluster-id}.elevate-api.cloud, or "
         "the older https://{cluster-id}.api.esales.apptus.cloud) and api_version",
}


class EsalesImports(ClientSource):
    """An `esales` source."""

    lists_jobs = False

    def __init__(
        self, config: EsalesSource, session: aiohttp.ClientSession, *,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        api_key = config.api_key.get_secret_value()
        self.path = f"/api/admin/{config.api_version}/import/status"
        client = SourceClient.for_source(
            config, session, auth=StaticAuth({"Api-Key": api_key}, (api_key,)), hints=_HINTS,
            pacer=RatePacer(clock=clock, sleep=sleep),
        )
        super().__init__(config, client, DEFAULT_STATES)

    async def poll(self, ids: Sequence[str]) -> PollResult:
        return await poll_by_id(self.name, ids, self._lookup)

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        jobs = []
        for i, item in enumerate(items_of(payload, "push")):
            job = self.job(require_str_or_int(item, "id", f"push[{i}]"), item, f"push[{i}]")
            if job is not None:
                jobs.append(job)
        return jobs

    async def _lookup(self, import_id: str) -> JobStatus | None:
        response = await self.client.get(self.client.url(self.path),
                                         params={"id": import_id})
        return self.job(import_id, expect_object(response.body, "import status response"),
                        "import status response")

    def job(self, import_id: str, item: dict[str, Any], where: str) -> JobStatus | None:
        """One import status as an observation; None for `NOT_FOUND`."""
        raw = item.get("status")
        if not isinstance(raw, str):
            raise drift(f"{where}.status", "is missing" if raw is None else "should be a string")
        if raw == NOT_FOUND:
            return None
        return JobStatus(
            id=import_id,
            state=self.states(raw),
            raw_state=raw,
            message=optional_str(item, "reason", where),
            fields=item,
        )
