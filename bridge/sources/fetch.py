"""The HTTP plumbing every polling source shares.

`fetch_json` makes one request and turns every way it can go wrong into a typed
`SourceError` whose message says what to do (the retry policy is the `_VERDICTS` table,
not ifs spread over the sources). `SourceClient` binds it to one configured source: base
URL, timeout, extra headers, auth (with one retry after a 401 when the credential can be
renewed) and the secrets to keep out of messages. The rest are small helpers the kinds
share: raw-state mapping that warns once per unmapped value, and shape checks that name
the drifted field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from yarl import URL

from bridge.config.schema import SourceBase
from bridge.errors import SourceError, SourceMisconfigured, SourceUnavailable
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.base import map_state

if TYPE_CHECKING:
    from bridge.sources.auth import Authenticator

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY_BYTES = 10 * 1024 * 1024
# Secrets shorter than this are not redacted: replacing "1" everywhere would garble messages.
_MIN_SECRET_LEN = 4
_DETAIL_KEYS = ("description", "message", "error_description", "error", "detail", "title")
_DETAIL_MAX = 200


@dataclass(frozen=True, slots=True)
class _Verdict:
    error: type[SourceError]
    hint: str


# What an HTTP status means for a poll. Unlisted 5xx are retryable, other 4xx are permanent.
_VERDICTS: Mapping[int, _Verdict] = {
    400: _Verdict(SourceMisconfigured, "the API rejected the request: check the source settings"),
    401: _Verdict(SourceMisconfigured, "the API rejected the credentials: check the credentials"),
    403: _Verdict(
        SourceMisconfigured, "access denied: check the credentials and their permissions"
    ),
    404: _Verdict(SourceMisconfigured, "not found: check base_url"),
    408: _Verdict(SourceUnavailable, "the API timed out"),
    412: _Verdict(
        SourceMisconfigured, "precondition failed: missing tenant header: check the source settings"
    ),
    425: _Verdict(SourceUnavailable, "the API asked to retry later"),
    429: _Verdict(SourceUnavailable, "rate limited: retrying later"),
}
_SERVER_ERROR = _Verdict(SourceUnavailable, "the API is failing: retrying later")
_CLIENT_ERROR = _Verdict(
    SourceMisconfigured, "the API refused the request: check the source settings"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonResponse:
    """A decoded answer. `body` is None for an accepted error status without a JSON body."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def redact(text: str, secrets: Collection[str]) -> str:
    """`text` with every secret replaced by `***`, longest first so overlaps go too."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta seconds (fractional allowed,
    Terminal sends `0.62`) or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def describe_url(url: str | URL) -> str:
    """The URL without query string or user info, safe to show (queries can carry keys)."""
    try:
        parsed = URL(url)
        if parsed.host is None:
            return f"{parsed.scheme}:…" if parsed.scheme else "<relative URL>"
        return str(parsed.with_query(None).with_fragment(None).with_user(None))
    except ValueError:
        return "<invalid URL>"


async def fetch_json(
    session: aiohttp.ClientSession,
    url: str | URL,
    *,
    time_limit: float,
    method: str = "GET",
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    json_body: Any = None,
    accept: Collection[int] = (),
    hints: Mapping[int, str] | None = None,
    secrets: Collection[str] = (),
    max_bytes: int = MAX_BODY_BYTES,
) -> JsonResponse:
    """Make one request and return its decoded JSON body, or raise a classified SourceError.

    Statuses in `accept` (404 for a per-id lookup) are returned instead of raised; `hints`
    replace the generic advice for a status (JTL's 412, eSales' 404). Redirects are
    followed only on the same host, and `time_limit` bounds them all together.
    """
    where = f"{method} {describe_url(url)}"
    try:
        request = _Request(method=method, url=URL(url), params=params, data=data,
                           json_body=json_body)
    except ValueError:
        raise SourceMisconfigured(f"invalid URL: check base_url and url ({where})") from None
    secrets = (*secrets, *url_secrets(request.url))
    try:
        async with asyncio.timeout(time_limit):
            reply = await _exchange(session, request, headers, max_bytes, where)
    except TimeoutError:
        raise SourceUnavailable(f"no answer within {time_limit:g}s: timed out ({where})") from None
    except aiohttp.ClientError as exc:
        raise SourceUnavailable(f"connection failed: {_client_error(exc, secrets)} ({where})"
                                ) from None
    if 200 <= reply.status < 300 or reply.status in accept:
        lenient = reply.status in accept and not 200 <= reply.status < 300
        body = _decode(reply.raw, reply.content_type, where, lenient=lenient)
        return JsonResponse(status=reply.status, body=body, headers=reply.headers)
    raise _status_error(
        reply.status, reply.reason, reply.raw, reply.headers, where, hints or {}, secrets
    )


def url_secrets(url: URL) -> tuple[str, ...]:
    """What a URL carries that must not be shown: its password (and the Basic credential
    aiohttp makes of it) and its query values (`?token=...`)."""
    found = [value for value in url.query.values() if len(value) >= _MIN_SECRET_LEN]
    if url.password:
        found.append(url.password)
        found.append(aiohttp.encode_basic_auth(url.user or "", url.password).split(" ", 1)[1])
    if found:
        found.append(str(url))
    return tuple(found)


def _client_error(exc: aiohttp.ClientError, secrets: Collection[str]) -> str:
    if isinstance(exc, aiohttp.InvalidURL):
        # Its text is the whole URL, credentials and all.
        return "invalid URL"
    return redact(str(exc) or type(exc).__name__, secrets)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    method: str
    url: URL
    params: Mapping[str, str] | None = None
    data: Mapping[str, str] | None = None
    json_body: Any = None

    def redirected(self, status: int, location: str, where: str) -> _Request:
        """The request a redirect asks for. aiohttp would follow any redirect and strip only
        `Authorization`, so API keys in other headers (Connection-Token, Api-Key, x-api-key)
        would reach whatever host the answer names: only the same host is followed."""
        try:
            target = self.url.join(URL(location))
            host = target.host
        except ValueError:
            raise SourceUnavailable(f"the API redirected to an invalid address ({where})"
                                    ) from None
        upgrade = (self.url.scheme, target.scheme) == ("http", "https")
        same_origin = host == self.url.host and (
            upgrade or (target.scheme, target.port) == (self.url.scheme, self.url.port))
        if not same_origin:
            raise SourceMisconfigured(
                f"the API redirected to another host ({describe_url(target)}): refusing to "
                f"send the credentials there; set base_url (or url) to the address the API "
                f"answers on ({where})"
            )
        if status in (307, 308):
            return _Request(method=self.method, url=target, data=self.data,
                            json_body=self.json_body)
        # 301, 302 and 303 repeat the request as a GET, as browsers and aiohttp do.
        return _Request(method="GET" if self.method != "HEAD" else "HEAD", url=target)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reply:
    status: int
    reason: str
    content_type: str
    headers: Mapping[str, str]
    raw: bytes


async def _exchange(
    session: aiohttp.ClientSession, request: _Request, headers: Mapping[str, str] | None,
    max_bytes: int, where: str,
) -> _Reply:
    """Send `request`, following same-host redirects, and read the final answer (capped)."""
    for _ in range(MAX_REDIRECTS + 1):
        async with session.request(
            request.method, request.url, params=request.params, headers=headers,
            data=request.data, json=request.json_body, allow_redirects=False,
        ) as response:
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location:
                request = request.redirected(response.status, location, where)
                continue
            return _Reply(
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


def parse_json(raw: bytes | str) -> Any:
    """`json.loads` that fails only with ValueError: a hostile body nested a hundred thousand
    levels deep makes the decoder raise RecursionError instead."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to decode") from None


def _decode(raw: bytes, content_type: str, where: str, *, lenient: bool) -> Any:
    try:
        return parse_json(raw)
    except ValueError as exc:
        if lenient:
            return None
        if not raw.strip():
            raise SourceUnavailable(f"expected JSON, got an empty body ({where})") from None
        if "json" not in content_type:
            raise SourceUnavailable(
                f"expected JSON, got {content_type or 'no content type'} ({where})"
            ) from None
        raise SourceUnavailable(f"malformed JSON: {exc} ({where})") from None


def _status_error(
    status: int,
    reason: str,
    raw: bytes,
    headers: Mapping[str, str],
    where: str,
    hints: Mapping[int, str],
    secrets: Collection[str],
) -> SourceError:
    verdict = _VERDICTS.get(status) or (_SERVER_ERROR if status >= 500 else _CLIENT_ERROR)
    hint = hints.get(status, verdict.hint)
    detail = _server_detail(raw, secrets)
    said = f"; the API said {detail!r}" if detail else ""
    retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
    wait = f"; Retry-After {retry_after:g}s" if retry_after is not None else ""
    message = f"{hint} (HTTP {status} {reason} from {where}{said}{wait})".replace(" )", ")")
    return verdict.error(message, retry_after=retry_after)


def _server_detail(raw: bytes, secrets: Collection[str]) -> str | None:
    """A short reason from a JSON error body (`error`, `message`, ...), secrets redacted."""
    try:
        body = parse_json(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in _DETAIL_KEYS:
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return redact(value.strip()[:_DETAIL_MAX], secrets)
    return None


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
        self._secrets = (*secrets, *config.headers.values())

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
        return await fetch_json(
            self.session, url, time_limit=self.timeout, method=method, params=params,
            headers=headers, json_body=json_body, accept=accept, hints=self.hints,
            secrets=self.secrets,
        )


# An API inventing endless distinct states must not grow this memory (or the log) forever.
MAX_WARNED_STATES = 100


class StateMapper:
    """A source's raw -> canonical state table; warns once per unmapped raw value."""

    def __init__(
        self, source: str, defaults: Mapping[str, JobState], overrides: Mapping[str, JobState]
    ) -> None:
        self.source = source
        self.defaults = defaults
        self.overrides = overrides
        self._warned: set[str] = set()

    def __call__(self, raw: str) -> JobState:
        state = map_state(raw, self.defaults, self.overrides)
        known = raw in self.overrides or raw in self.defaults
        if not known and raw not in self._warned and len(self._warned) < MAX_WARNED_STATES:
            self._warned.add(raw)
            log.warning(
                "source %s reported the unmapped state %r: treating it as unknown; "
                "map it in [sources.states]%s", self.source, raw[:200],
                "" if len(self._warned) < MAX_WARNED_STATES
                else " (further unmapped states of this source are not logged)",
            )
        return state


def raw_text(value: object) -> str:
    """A raw API value as the text users match in `[sources.states]` and see as raw_state."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


def drift(where: str, problem: str) -> SourceUnavailable:
    return SourceUnavailable(
        f"unexpected response shape: {where} {problem}; the API may have changed or "
        "base_url may point at a different API"
    )


def expect_list(body: Any, where: str) -> list[Any]:
    if not isinstance(body, list):
        raise drift(where, f"should be a list, got {_type_name(body)}")
    return body


def expect_object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise drift(where, f"should be an object, got {_type_name(body)}")
    return body


def require_str_or_int(item: Mapping[str, Any], key: str, where: str) -> str:
    """An identifier field: text or an integer, returned as text (never via float)."""
    value = item.get(key)
    if value is None or value == "":
        raise drift(f"{where}.{key}", "is missing" if value is None else "is empty")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise drift(f"{where}.{key}", f"should be a string, got {_type_name(value)}")
    return str(value)


def optional_number(item: Mapping[str, Any], key: str, where: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise drift(f"{where}.{key}", f"should be a number, got {_type_name(value)}")
    return float(value)


def percent_value(value: float | None) -> float | None:
    """A reported percent made safe for detection: None for no progress (absent, negative,
    NaN or infinite, which lenient JSON encoders send) and at most 100."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return min(100.0, value)


def optional_str(item: Mapping[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise drift(f"{where}.{key}", f"should be a string, got {_type_name(value)}")
    return value


def items_of(payload: Any, where: str) -> list[dict[str, Any]]:
    """A pushed body as items: one object or a list of objects."""
    items = payload if isinstance(payload, list) else [payload]
    return [expect_object(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _type_name(value: Any) -> str:
    names: dict[type[Any], str] = {
        dict: "an object", list: "a list", str: "a string", bool: "a boolean",
        int: "a number", float: "a number", type(None): "null",
    }
    return names.get(type(value), type(value).__name__)



async def for_each_id(
    ids: Sequence[str], lookup: Callable[[str], Awaitable[T]], *, limit: int = 8
) -> list[T]:
    """`lookup` over ids with at most `limit` requests in flight. The first failure cancels
    the rest and is raised as itself, so callers see one SourceError, not a group."""
    gate = asyncio.Semaphore(limit)

    async def one(job_id: str) -> T:
        async with gate:
            return await lookup(job_id)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(job_id)) for job_id in ids]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def listed_plus_lookups(
    listed: Sequence[JobStatus],
    ids: Sequence[str],
    lookup: Callable[[str], Awaitable[JobStatus | None]],
) -> PollResult:
    """A complete list poll, plus a lookup of each tracked id the list left out (an API that
    lists only recent jobs); a lookup answering None (404) puts the id in `missing`."""
    seen = {job.id for job in listed}
    extra = list(dict.fromkeys(job_id for job_id in ids if job_id not in seen))
    found = await for_each_id(extra, lookup)
    observations = [*listed, *(job for job in found if job is not None)]
    missing = frozenset(job_id for job_id, job in zip(extra, found, strict=True) if job is None)
    return PollResult(observations=observations, complete=True, missing=missing)


def same_origin(url: str, base: str) -> bool:
    """Whether a next-page link stays on the configured host (credentials go with it)."""
    a, b = URL(url), URL(base)
    return a.is_absolute() and (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
