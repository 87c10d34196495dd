"""`SourceClient`: one configured source's view of HTTP — base URL, timeout, extra headers,
auth (with one retry after a 401 when the credential can be renewed), the rate-limit
budget (requests paced under it; a 429 waited out and retried, `RATE_LIMIT_ATTEMPTS` tries
in all, before it fails the poll) and the secrets to keep out of messages.
`SourceClient.for_source` builds it from the source's config, so each kind names only what
is its own (default base URL, tenant headers, hints, pacing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from bridge.config.schema import SourceBase
from bridge.errors import RateLimited, SourceMisconfigured
from bridge.model import JobState
from bridge.sources.auth import Authenticator, Clock, build_auth
from bridge.sources.exchange import Fetcher, JsonResponse, Request, describe_url
from bridge.sources.mapping import StateMapper
from bridge.sources.ratelimit import RateBudget, RatePacer

log = logging.getLogger(__name__)

# A 429 is waited out and the request sent again, this many times in all, before the poll
# fails: one refusal of a busy API is not a failed poll.
RATE_LIMIT_ATTEMPTS = 3


class SourceClient:
    """One source's view of HTTP: its base URL, timeout, headers, auth and secrets."""

    def __init__(
        self,
        config: SourceBase,
        session: aiohttp.ClientSession,
        *,
        auth: Authenticator,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        hints: Mapping[int, str] | None = None,
        secrets: Sequence[str] = (),
        pacer: RatePacer | None = None,
    ) -> None:
        self.session = session
        self.name = config.name
        self.pacer = pacer or RatePacer()
        self.pacer.max_wait = config.rate_limit_wait.total_seconds()
        # Set when a renewed credential was refused too (JTL answers 401 for a wrong tenant
        # header): the 401 is not the credential's, so later polls do not renew it again.
        self._renewal_refused = False
        self.auth = auth
        self.base_url = (base_url or config.base_url or "").rstrip("/")
        self.timeout = config.timeout.total_seconds()
        self.headers = {"Accept": "application/json", **(headers or {}), **config.headers}
        self.hints = dict(hints or {})
        self.fetcher = Fetcher(session=session, time_limit=self.timeout, hints=self.hints,
                               observe=self.pacer.observe)
        self._secrets = (*secrets, *config.headers.values())

    @classmethod
    def for_source(
        cls,
        config: SourceBase,
        session: aiohttp.ClientSession,
        *,
        default_base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        hints: Mapping[int, str] | None = None,
        secrets: Sequence[str] = (),
        auth: Authenticator | None = None,
        default_token_url: str | None = None,
        clock: Clock = time.monotonic,
        pacer: RatePacer | None = None,
    ) -> SourceClient:
        """The client of one `[[sources]]` table: its `auth` table (unless the kind brings
        its own `auth`), its `base_url` (else `default_base_url`), headers, timeout and the
        kind's rate-limit pacing (`pacer`, else one that reads the common headers)."""
        if auth is None:
            auth = build_auth(config.auth, session, default_token_url=default_token_url,
                              timeout=config.timeout.total_seconds(), clock=clock)
        return cls(config, session, auth=auth, base_url=config.base_url or default_base_url,
                   headers=headers, hints=hints, secrets=secrets,
                   pacer=pacer or RatePacer(clock=clock))

    @property
    def secrets(self) -> tuple[str, ...]:
        """Read per request: an OAuth2 access token is a secret only once it was issued."""
        return (*self.auth.secrets, *self._secrets)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def get(
        self, url: str | URL, *, params: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> JsonResponse:
        return await self.request("GET", url, params=params, accept=accept)

    async def request(
        self, method: str, url: str | URL, *, params: Mapping[str, str] | None = None,
        json_body: Any = None, accept: Collection[int] = (),
    ) -> JsonResponse:
        """One request, paced under the rate-limit budget. A 429 whose wait (Retry-After, or
        the vendor's budget headers) is at most `pacer.max_wait` is sat out and the request
        sent again; the last refusal, or one asking for longer or saying nothing readable,
        is raised with its `retry_after` so the scheduler backs off."""
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            await self.pacer.before_request()
            try:
                return await self._authorized(method, url, params, json_body, accept)
            except RateLimited as refused:
                wait = self.pacer.wait_after_429(refused.headers)
                if attempt == RATE_LIMIT_ATTEMPTS or wait is None or wait > self.pacer.max_wait:
                    raise
                log.info("source %s: rate limited by %s; waiting %.2fs before try %d of %d",
                         self.name, describe_url(url), wait, attempt + 1, RATE_LIMIT_ATTEMPTS)
                await self.pacer.sit_out(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _authorized(
        self, method: str, url: str | URL, params: Mapping[str, str] | None, json_body: Any,
        accept: Collection[int],
    ) -> JsonResponse:
        """One authenticated request. After a 401 a renewable credential (an OAuth2 token
        revoked before its announced expiry) is dropped, renewed and the request retried once."""
        renew = self.auth.renewable and 401 not in accept and not self._renewal_refused
        response = await self._send(method, url, params, json_body, {*accept, 401} if renew
                                    else accept)
        if renew and response.status == 401:
            self.auth.invalidate()
            log.info("credential rejected by %s; renewing it and retrying once",
                     describe_url(url))
            try:
                response = await self._send(method, url, params, json_body, accept)
            except SourceMisconfigured:
                self._renewal_refused = True
                raise
        if 200 <= response.status < 300:
            self._renewal_refused = False
        return response

    async def _send(
        self, method: str, url: str | URL, params: Mapping[str, str] | None, json_body: Any,
        accept: Collection[int],
    ) -> JsonResponse:
        headers = {**self.headers, **await self.auth.headers()}
        request = Request(method=method, url=url, params=params, headers=headers,
                          json_body=json_body)
        return await self.fetcher.fetch(request, accept=accept, secrets=self.secrets)


class ClientSource:
    """What every polled kind that requests through a `SourceClient` keeps: its table, the
    client, the client's rate-limit budget (for /metrics) and its raw -> canonical state
    table. Each kind builds its own client and passes it in with its default states."""

    def __init__(
        self, config: SourceBase, client: SourceClient, default_states: Mapping[str, JobState]
    ) -> None:
        self.config = config
        self.client = client
        self.budget: RateBudget | None = client.pacer.budget
        self.states = StateMapper(config.name, default_states, config.states)

    @property
    def name(self) -> str:
        return self.config.name
