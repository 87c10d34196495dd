"""Request credentials for sources: the `auth` table of a source turned into headers.

Static kinds (`basic`, `bearer`, `header`, `none`) are fixed headers. `oauth2` runs the
client-credentials grant against `token_url`, caches the token and renews it shortly before
it expires; a 401 from the API drops the cached token so the caller can renew and retry once.
Every authenticator lists its secrets so error messages can redact them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from bridge.config.schema import (
    Auth,
    BasicAuth,
    BearerAuth,
    HeaderAuth,
    NoAuth,
    OAuth2Auth,
)
from bridge.errors import ConfigError
from bridge.sources.exchange import Fetcher, Request, describe_url
from bridge.sources.shapes import drift, expect_object

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Renew this long before expiry (at most a tenth of the lifetime, for short-lived tokens),
# so a request never leaves with a token that expires on the way.
RENEW_BEFORE = 30.0
_TOKEN_HINTS = {
    400: "the OAuth2 token endpoint rejected the request: check client_id, client_secret "
         "and scope",
    401: "the OAuth2 token endpoint rejected the client credentials: check client_id and "
         "client_secret",
    404: "the OAuth2 token endpoint was not found: check token_url",
}


class Authenticator(Protocol):
    """Headers that authenticate a request, plus what error messages must never show."""

    @property
    def renewable(self) -> bool:
        """True when a rejected credential can be replaced by a fresh one (OAuth2 tokens)."""

    @property
    def secrets(self) -> tuple[str, ...]: ...

    async def headers(self) -> Mapping[str, str]: ...

    def invalidate(self) -> None:
        """Forget the current credential: the API rejected it."""


@dataclass(frozen=True, slots=True)
class StaticAuth:
    """Fixed headers: basic, bearer, a key header, or nothing."""

    fixed: Mapping[str, str]
    secret_values: tuple[str, ...] = ()
    renewable: bool = False

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.secret_values

    async def headers(self) -> Mapping[str, str]:
        return self.fixed

    def invalidate(self) -> None:
        return None


NO_AUTH = StaticAuth({})


def basic(username: str, password: str) -> StaticAuth:
    encoded = aiohttp.encode_basic_auth(username, password)
    return StaticAuth({"Authorization": encoded}, (password, encoded.split(" ", 1)[1]))


def bearer(token: str) -> StaticAuth:
    return StaticAuth({"Authorization": f"Bearer {token}"}, (token,))


class OAuth2ClientCredentials:
    """The client-credentials grant with a token cache shared by every poll of a source."""

    renewable = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        timeout: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.session = session
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.timeout = timeout
        self.clock = clock
        self.token_requests = 0
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def secrets(self) -> tuple[str, ...]:
        client = self._client_auth().split(" ", 1)[1]
        return tuple(s for s in (self._client_secret, client, self._token) if s)

    async def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {await self.token()}"}

    def invalidate(self) -> None:
        self._token = None

    def _client_auth(self) -> str:
        # client_secret_basic (RFC 6749 section 2.3.1), which every server must support.
        return aiohttp.encode_basic_auth(self.client_id, self._client_secret)

    async def token(self) -> str:
        # One lock so concurrent polls share a single token request.
        async with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._token, self._renew_at = await self._request_token()
            return self._token

    async def _request_token(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        self.token_requests += 1
        fetcher = Fetcher(session=self.session, time_limit=self.timeout, hints=_TOKEN_HINTS)
        request = Request(
            method="POST", url=self.token_url, data=form,
            headers={"Authorization": self._client_auth(), "Accept": "application/json"},
        )
        response = await fetcher.fetch(request, secrets=self.secrets)
        body = expect_object(response.body, "token response")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise drift("token response.access_token", "is missing")
        seconds = _lifetime(body.get("expires_in"))
        if seconds is None:
            log.info("token endpoint %s gave no expires_in; keeping the token until a 401",
                     describe_url(self.token_url))
            return token, math.inf
        return token, self.clock() + seconds - min(RENEW_BEFORE, seconds / 10)


def _lifetime(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def build_auth(
    config: Auth | None,
    session: aiohttp.ClientSession,
    *,
    default_token_url: str | None = None,
    timeout: float = 10.0,
    clock: Clock = time.monotonic,
) -> Authenticator:
    """The authenticator for a source's `auth` table (None: no auth)."""
    if config is None or isinstance(config, NoAuth):
        return NO_AUTH
    if isinstance(config, BasicAuth):
        return basic(config.username, config.password.get_secret_value())
    if isinstance(config, BearerAuth):
        return bearer(config.token.get_secret_value())
    if isinstance(config, HeaderAuth):
        value = config.value.get_secret_value()
        return StaticAuth({config.header: value}, (value,))
    return _oauth2(config, session, default_token_url, timeout, clock)


def _oauth2(
    config: OAuth2Auth,
    session: aiohttp.ClientSession,
    default_token_url: str | None,
    timeout: float,
    clock: Clock,
) -> OAuth2ClientCredentials:
    token_url = config.token_url or default_token_url
    if not token_url:
        raise ConfigError("auth type 'oauth2' needs token_url: set it in [sources.auth]",
                          path="auth.token_url")
    return OAuth2ClientCredentials(
        session, token_url=token_url, client_id=config.client_id,
        client_secret=config.client_secret.get_secret_value(), scope=config.scope,
        timeout=timeout, clock=clock,
    )
