"""One HTTP exchange of a source: send, follow same-host redirects, read a capped body, and
turn every way it can go wrong into a typed `SourceError` whose message says what to do.

`Fetcher` is the small client object: what stays fixed for one caller (session, time limit,
status hints, body cap) is its state; what changes per call is a `Request`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from yarl import URL

from bridge.errors import SourceMisconfigured, SourceUnavailable
from bridge.sources.redaction import client_error_text, url_secrets
from bridge.sources.verdicts import decode, status_error

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonResponse:
    """A decoded answer. `body` is None for an accepted error status without a JSON body."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What to send. `headers` go with every same-host redirect of it."""

    url: str | URL
    method: str = "GET"
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    data: Mapping[str, str] | None = None
    json_body: Any = None

    @property
    def where(self) -> str:
        return f"{self.method} {describe_url(self.url)}"

    def redirected(self, status: int, location: str, where: str) -> Request:
        """The request a redirect asks for. aiohttp would follow any redirect and strip only
        `Authorization`, so API keys in other headers (Connection-Token, Api-Key, x-api-key)
        would reach whatever host the answer names: only the same host is followed."""
        url = URL(self.url)
        try:
            target = url.join(URL(location))
            host = target.host
        except ValueError:
            raise SourceUnavailable(f"the API redirected to an invalid address ({where})"
                                    ) from None
        upgrade = (url.scheme, target.scheme) == ("http", "https")
        same_origin = host == url.host and (
            upgrade or (target.scheme, target.port) == (url.scheme, url.port))
        if not same_origin:
            raise SourceMisconfigured(
                f"the API redirected to another host ({describe_url(target)}): refusing to "
                f"send the credentials there; set base_url (or url) to the address the API "
                f"answers on ({where})"
            )
        if status in (307, 308):
            return replace(self, url=target, params=None)
        # 301, 302 and 303 repeat the request as a GET, as browsers and aiohttp do.
        return Request(method="GET" if self.method != "HEAD" else "HEAD", url=target,
                       headers=self.headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The final answer of an exchange, body read but not decoded."""

    status: int
    reason: str
    content_type: str
    headers: Mapping[str, str]
    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetcher:
    """Makes requests for one caller and returns decoded JSON or raises a classified error.

    Statuses in `accept` (404 for a per-id lookup) are returned instead of raised; `hints`
    replace the generic advice for a status (JTL's 412, eSales' 404). Redirects are followed
    only on the same host, and `time_limit` bounds them all together.
    """

    session: aiohttp.ClientSession
    time_limit: float
    hints: Mapping[int, str] = field(default_factory=dict)
    max_bytes: int = MAX_BODY_BYTES
    # Sees the headers of every final answer (the source's rate-limit budget reads them).
    observe: Callable[[Mapping[str, str]], None] | None = None
    # What sends a request and reads its answer: `exchange`, or a recorder around it, or a
    # recording played back (bridge.record).
    transport: Transport | None = None

    async def fetch(
        self, request: Request, *, accept: Collection[int] = (), secrets: Collection[str] = (),
    ) -> JsonResponse:
        where = request.where
        try:
            request = replace(request, url=URL(request.url))
        except ValueError:
            raise SourceMisconfigured(f"invalid URL: check base_url and url ({where})"
                                      ) from None
        secrets = (*secrets, *url_secrets(URL(request.url)))
        try:
            async with asyncio.timeout(self.time_limit):
                send = self.transport or exchange
                reply = await send(self.session, request, self.max_bytes, where)
        except TimeoutError:
            raise SourceUnavailable(
                f"no answer within {self.time_limit:g}s: timed out ({where})") from None
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(
                f"connection failed: {client_error_text(exc, secrets)} ({where})") from None
        if self.observe is not None:
            self.observe(reply.headers)
        if 200 <= reply.status < 300 or reply.status in accept:
            lenient = reply.status in accept and not 200 <= reply.status < 300
            body = decode(reply.raw, reply.content_type, where, lenient=lenient)
            return JsonResponse(status=reply.status, body=body, headers=reply.headers)
        raise status_error(
            reply.status, reply.reason, reply.raw, reply.headers, where, self.hints, secrets
        )


Transport = Callable[[aiohttp.ClientSession, "Request", int, str], Awaitable["Reply"]]


async def exchange(
    session: aiohttp.ClientSession, request: Request, max_bytes: int, where: str,
) -> Reply:
    """Send `request`, following same-host redirects, and read the final answer (capped)."""
    for _ in range(MAX_REDIRECTS + 1):
        async with session.request(
            request.method, request.url, params=request.params, headers=request.headers,
            data=request.data, json=request.json_body, allow_redirects=False,
        ) as response:
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location:
                request = request.redirected(response.status, location, where)
                continue
            return Reply(
                status=response.status, reason=response.reason or "",
                content_type=response.content_type, headers=dict(response.headers),
                raw=await _read_capped(response, max_bytes, where),
            )
    raise SourceUnavailable(
        f"more than {MAX_REDIRECTS} redirects: the API redirects in a loop ({where})"
    )


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int, where: str) -> bytes:
    too_big = SourceUnavailable(
        f"response larger than {max_bytes // (1024 * 1024) or max_bytes} "
        f"{'MiB' if max_bytes >= 1024 * 1024 else 'bytes'}: refusing to read it ({where})"
    )
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


def describe_url(url: str | URL) -> str:
    """The URL without query string or user info, safe to show (queries can carry keys)."""
    try:
        parsed = URL(url)
        if parsed.host is None:
            return f"{parsed.scheme}:…" if parsed.scheme else "<relative URL>"
        return str(parsed.with_query(None).with_fragment(None).with_user(None))
    except ValueError:
        return "<invalid URL>"


def same_origin(url: str, base: str) -> bool:
    """Whether a next-page link stays on the configured host (credentials go with it)."""
    a, b = URL(url), URL(base)
    return a.is_absolute() and (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
