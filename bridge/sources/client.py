"""`SourceClient`: one configured source's view of HTTP — base URL, timeout, extra headers,
auth (with one retry after a 401 when the credential can be renewed) and the secrets to
keep out of messages. `SourceClient.for_source` builds it from the source's config, so
each kind names only what is its own (default base URL, tenant headers, hints)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from bridge.config.schema import SourceBase
from bridge.sources.auth import Authenticator, Clock, build_auth
from bridge.sources.exchange import Fetcher, JsonResponse, Request, describe_url

log = logging.getLogger(__name__)


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
    ) -> None:
        self.session = session
        self.auth = auth
        self.base_url = (base_url or config.base_url or "").rstrip("/")
        self.timeout = config.timeout.total_seconds()
        self.headers = {"Accept": "application/json", **(headers or {}), **config.headers}
        self.hints = dict(hints or {})
        self.fetcher = Fetcher(session=session, time_limit=self.timeout, hints=self.hints)
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
    ) -> SourceClient:
        """The client of one `[[sources]]` table: its `auth` table (unless the kind brings
        its own `auth`), its `base_url` (else `default_base_url`), headers and timeout."""
        if auth is None:
            auth = build_auth(config.auth, session, default_token_url=default_token_url,
                              timeout=config.timeout.total_seconds(), clock=clock)
        return cls(config, session, auth=auth, base_url=config.base_url or default_base_url,
                   headers=headers, hints=hints, secrets=secrets)

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
        """One authenticated request. After a 401 a renewable credential (an OAuth2 token
        revoked before its announced expiry) is dropped, renewed and the request retried once."""
        renew = self.auth.renewable and 401 not in accept
        response = await self._send(method, url, params, json_body, {*accept, 401} if renew
                                    else accept)
        if renew and response.status == 401:
            self.auth.invalidate()
            log.info("credential rejected by %s; renewing it and retrying once",
                     describe_url(url))
            response = await self._send(method, url, params, json_body, accept)
        return response

    async def _send(
        self, method: str, url: str | URL, params: Mapping[str, str] | None, json_body: Any,
        accept: Collection[int],
    ) -> JsonResponse:
        headers = {**self.headers, **await self.auth.headers()}
        request = Request(method=method, url=url, params=params, headers=headers,
                          json_body=json_body)
        return await self.fetcher.fetch(request, accept=accept, secrets=self.secrets)
