"""Who may change things: the admin token on write routes (contract section 8).

Write routes require `Authorization: Bearer <token>` when an admin token is set. Without a
token they are open only while the server listens on loopback, and refused on any other
address. Open loopback writes also require a loopback `Host` and a same-origin `Origin`, so a
web page in the operator's browser cannot post to the bridge (CSRF, DNS rebinding).

The dashboard cannot send an Authorization header from a plain form, so it accepts the token
as a form field `token`, or a cookie set by its sign-in form that holds an HMAC of the token
(never the token itself).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)

COOKIE = "bridge_admin"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WriteAccess(StrEnum):
    """How write routes are guarded, decided once from the token and the listen address."""

    TOKEN = "token"  # an admin token is set: every write presents it
    LOOPBACK = "loopback"  # no token, loopback listen: open to local, same-origin callers
    REFUSED = "refused"  # no token, reachable from the network: writes are refused


def listen_host(listen: str) -> str:
    """The host part of a listen address: "127.0.0.1:8080", "[::1]:80", "::1", "localhost"."""
    text = listen.strip()
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        text = host
    return text.strip("[]")


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _request_host(request: web.Request) -> str:
    host = request.host
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class AdminAuth:
    """Checks write requests against the admin token and the listen policy."""

    def __init__(self, token: str | None, listen: str) -> None:
        self._token = token or None
        self._cookie_value = (
            hmac.new(self._token.encode(), b"bridge-dashboard", hashlib.sha256).hexdigest()
            if self._token
            else None
        )
        if self._token:
            self.access = WriteAccess.TOKEN
        elif is_loopback(listen_host(listen)):
            self.access = WriteAccess.LOOPBACK
        else:
            self.access = WriteAccess.REFUSED
            log.warning(
                "listening on %s without an admin token: write routes are refused; "
                "set BRIDGE_ADMIN_TOKEN to enable them", listen,
            )

    @property
    def token_required(self) -> bool:
        return self.access is WriteAccess.TOKEN

    @property
    def writes_enabled(self) -> bool:
        return self.access is not WriteAccess.REFUSED

    def token_matches(self, presented: str | None) -> bool:
        if self._token is None or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token.encode())

    def cookie_matches(self, request: web.Request) -> bool:
        value = request.cookies.get(COOKIE)
        if self._cookie_value is None or not value:
            return False
        return hmac.compare_digest(value.encode(), self._cookie_value.encode())

    def cookie_value(self) -> str | None:
        return self._cookie_value

    def check_bearer(self, request: web.Request) -> None:
        """Authorize a JSON API write; raises 401/403 with what to do."""
        self._check_origin(request)
        if self.access is WriteAccess.TOKEN:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.token_matches(presented.strip()):
                raise _unauthorized(
                    "this route needs `Authorization: Bearer <token>` with the admin token "
                    "(BRIDGE_ADMIN_TOKEN)"
                )
            return
        self._check_open(request)

    def check_form(self, request: web.Request, token: str | None) -> None:
        """Authorize a dashboard form: a `token` field or the sign-in cookie."""
        self._check_origin(request)
        if self.access is WriteAccess.TOKEN:
            if not (self.token_matches(token) or self.cookie_matches(request)):
                raise _unauthorized("wrong or missing admin token: sign in on the dashboard")
            return
        self._check_open(request)

    def _check_open(self, request: web.Request) -> None:
        if self.access is WriteAccess.REFUSED:
            raise web.HTTPForbidden(
                reason="write routes are disabled",
                text="write routes are refused on a non-loopback listen address without an "
                "admin token: set BRIDGE_ADMIN_TOKEN (or [bridge] admin_token)",
            )
        if not is_loopback(_request_host(request)):
            raise web.HTTPForbidden(
                text="without an admin token, write routes only answer requests addressed to "
                "a loopback host (127.0.0.1, localhost): set BRIDGE_ADMIN_TOKEN to allow others"
            )

    def _check_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is None:
            return
        if urlsplit(origin).netloc.lower() != request.host.lower():
            raise web.HTTPForbidden(text=f"cross-origin write refused (Origin: {origin})")


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=message, headers={"WWW-Authenticate": 'Bearer realm="bridge"'}
    )
