"""JTL Cloud ERP worker syncs: `GET /v1/workers/status`, a complete list of recurring syncs.

Requests carry the tenant headers (`x-tenant-id`, `x-appid`, `x-appversion`, optional
`x-api-key`) and a bearer token, static or from OAuth2 client credentials. `State` is an
integer 0..7; key casing differs between API versions, so every key is read in any casing.
`Progress` below zero means "no progress"; `ProgressText` is the message. 401 and 412 are
configuration errors (credentials, tenant header). Answers carry `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Interval-Length-Seconds` and no Retry-After:
requests slow down before the budget runs out, and a 429 waits out the interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bridge.config.schema import JtlSource
from bridge.errors import SourceError
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.auth import Clock
from bridge.sources.client import ClientSource, SourceClient
from bridge.sources.jtl_control import SyncControl, display_name
from bridge.sources.mapping import raw_text
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

DEFAULT_BASE_URL = "https://api.jtl-cloud.com/erp"
# How long a failed or unhelpful look-up of sync names is not repeated: names are for
# people, a poll must not pay for them every time.
NAMES_RETRY = 600.0
DEFAULT_TOKEN_URL = "https://auth.jtl-cloud.com/oauth2/token"
# The API's enum, in value order 0..7, with the canonical state of each.
STATE_NAMES: tuple[tuple[str, JobState], ...] = (
    ("Suspended", JobState.BLOCKED),
    ("Starting", JobState.PENDING),
    ("Running", JobState.RUNNING),
    ("SuccessfullFinished", JobState.SUCCEEDED),
    ("SleepingError", JobState.FAILED),
    ("Stopping", JobState.RUNNING),
    ("SleepingErrorGesperrt", JobState.FAILED),
    ("Deactivated", JobState.CANCELLED),
)
# Keyed by the number as text ("3"); the enum names are accepted too, as REST's PascalCase
# and GraphQL's upper snake case (`SUCCESSFULL_FINISHED`, `SLEEPING_ERROR_GESPERRT`).
DEFAULT_STATES: dict[str, JobState] = {
    **{str(value): state for value, (_, state) in enumerate(STATE_NAMES)},
    **dict(STATE_NAMES),
    **{re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(): state for name, state in STATE_NAMES},
}
def state_name(raw: str) -> str:
    """The enum's name for a state number ("4" -> "SleepingError"); other values as they are."""
    if raw.isdigit() and int(raw) < len(STATE_NAMES):
        return STATE_NAMES[int(raw)][0]
    return raw


_HINTS = {
    # JTL answers 401 for a missing or wrong x-tenant-id too (its error guide).
    401: "JTL rejected the request: check the bearer token or the OAuth2 client_id and "
         "client_secret, and tenant_id (sent as x-tenant-id)",
    403: "JTL denied access: check the app's scopes and api_key",
    412: "JTL refused the request: missing or unknown tenant header: check tenant_id "
         "(sent as x-tenant-id) and the credentials",
}


class JtlWorkers(ClientSource):
    """A `jtl` source."""

    lists_jobs = True

    def __init__(
        self, config: JtlSource, session: aiohttp.ClientSession, *,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        headers = {
            "x-tenant-id": config.tenant_id,
            "x-appid": config.app_id,
            "x-appversion": config.app_version,
        }
        secrets: tuple[str, ...] = ()
        if config.api_key is not None:
            headers["x-api-key"] = secrets_key = config.api_key.get_secret_value()
            secrets = (secrets_key,)
        client = SourceClient.for_source(
            config, session, default_base_url=DEFAULT_BASE_URL, headers=headers, hints=_HINTS,
            secrets=secrets, default_token_url=DEFAULT_TOKEN_URL, clock=clock,
            pacer=RatePacer(default_window=60.0, clock=clock, sleep=sleep),
        )
        super().__init__(config, client, DEFAULT_STATES)
        self.control = SyncControl(self.client)
        # syncId -> "Amazon DE: orders", from WorkerSyncItems (the list, or a Configure answer).
        self.names: dict[str, str] = {}
        self._clock = clock
        self._names_tried: float | None = None

    async def poll(self, ids: Sequence[str]) -> PollResult:
        response = await self.client.get(self.client.url("/v1/workers/status"))
        items = expect_list(response.body, "workers status response")
        jobs = [self.job(expect_object(item, f"[{i}]"), f"[{i}]") for i, item in enumerate(items)]
        if any(job.id not in self.names for job in jobs) and await self._learn_names():
            jobs = [dataclasses.replace(job, name=self.names.get(job.id)) for job in jobs]
        return PollResult(observations=jobs, complete=True)

    async def configure(self, sync_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Seed 001's Configure Sync; the answer's names are learnt for later messages."""
        item = await self.control.configure(sync_id, body)
        self.learn(item)
        return item

    def learn(self, item: Mapping[str, Any]) -> None:
        """Remember a sync's name from a WorkerSyncItem (list or Configure Sync answer)."""
        sync_id, name = item.get("identifier"), display_name(item)
        if isinstance(sync_id, str) and name is not None:
            self.names[sync_id] = name

    async def _learn_names(self) -> bool:
        """Read `GET /v2/workers` for names not known yet, at most every NAMES_RETRY seconds.
        A failure costs the names (logged), never the poll; nor do names spend the last of
        the rate budget (JTL's request quota belongs to the status polls): then next poll."""
        now = self._clock()
        if self._names_tried is not None and now - self._names_tried < NAMES_RETRY:
            return False
        budget = self.budget
        if budget is not None and budget.remaining is not None and budget.remaining < 1:
            return False
        self._names_tried = now
        try:
            for item in await self.control.list_items():
                self.learn(item)
        except SourceError as exc:
            log.warning("source %s: could not read the sync names (GET /v2/workers), "
                        "messages show sync ids: %s", self.name, exc)
            return False
        return True

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        return [self.job(item, f"push[{i}]") for i, item in enumerate(items_of(payload, "push"))]

    def job(self, item: dict[str, Any], where: str) -> JobStatus:
        """One worker sync as an observation, whatever the casing of its keys."""
        folded = {key.lower(): value for key, value in item.items()}
        state = folded.get("state")
        if state is None:
            raise drift(f"{where}.State", "is missing")
        if isinstance(state, bool) or not isinstance(state, int | float | str):
            raise drift(f"{where}.State", "should be an integer 0..7")
        raw = raw_text(state)
        return JobStatus(
            id=require_str_or_int(folded, "identifier", where),
            # Mapped by what the API sent (so `[sources.states]` keys "0".."7" work), shown
            # by name: people read "SleepingError", not "4".
            state=self.states(raw),
            raw_state=state_name(raw),
            # Progress < 0 means "none" in JTL's API.
            progress=percent_value(optional_number(folded, "progress", where)),
            # GraphQL's `errorMessage` says why a sync failed; else the progress text.
            message=optional_str(folded, "errormessage", where)
            or optional_str(folded, "progresstext", where),
            fields=item,
            # A new LastSync is a run that happened (contract: report it even between polls).
            run_key=optional_str(folded, "lastsync", where),
            due_at=_moment(optional_str(folded, "nextsync", where)),
            name=self.names.get(str(folded.get("identifier"))),
        )


def _moment(text: str | None) -> datetime | None:
    """An API timestamp (`2023-11-07T05:31:56Z`, 7-digit fractions too); None if unreadable."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
