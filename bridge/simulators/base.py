"""What every seed-API simulator shares: serving, scripted faults, a request log, demo plans.

A `Simulator` is an aiohttp server on 127.0.0.1 (port 0: a free port) that speaks one real
API. Tests script faults with `fail_next(Fault.RATE_LIMITED, retry_after="0.62")`; each
queued fault answers one API request, in order, before the normal handler runs. Every
request is logged (`requests`, `request_count(path)`), faulted or not. `tick()` advances the
simulator's demo world one step; `Plans` holds the scripted steps of each demo job, so a
run is deterministic given the seed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fault(StrEnum):
    """A way a real API misbehaves."""

    SERVER_ERROR = "server_error"  # HTTP 500 (or `status`)
    RATE_LIMITED = "rate_limited"  # HTTP 429 with Retry-After
    MALFORMED_JSON = "malformed_json"  # 200, application/json, cut-off body
    HTML_ERROR = "html_error"  # an HTML error page (a proxy or login page), 200 unless `status`
    SLOW = "slow"  # waits `delay` seconds, then answers normally
    UNAUTHORIZED = "unauthorized"  # the API's own 401
    WRONG_SHAPE = "wrong_shape"  # 200 with valid JSON of another shape (schema drift)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedFault:
    fault: Fault
    retry_after: str | None = "1"
    delay: float = 5.0
    status: int | None = None
    # Only requests whose path and query contain this (None: any request).
    matching: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    # The fault that answered it, if any.
    fault: Fault | None = None


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), headers=headers,
                        content_type="application/json")


_HTML = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
         "<h1>Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p>"
         "</body></html>")


class Simulator:
    """Base of the seed-API fakes: `async with JtlSimulator() as jtl: jtl.base_url ...`."""

    # The path prefix of the API on this server: `base_url` ends with it.
    prefix = ""
    # Paths served without faults or API auth (the OAuth2 token endpoint).
    unguarded: frozenset[str] = frozenset()

    def __init__(self, *, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.requests: list[RecordedRequest] = []
        self.ticks = 0
        self.plans = Plans()
        self.origin = ""
        self._faults: deque[ScriptedFault] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self.origin:
            raise RuntimeError("the simulator is not started: use `async with` or start()")
        return self.origin + self.prefix

    async def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns `base_url`."""
        self._closing.clear()
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.origin = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        # Wakes slow answers first so shutdown does not wait out their delay.
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # --- what subclasses provide ------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        raise NotImplementedError

    def authorize(self, request: web.Request) -> web.Response | None:
        """The API's refusal of a request (401, 412, ...), or None to serve it."""
        return None

    def unauthorized(self) -> web.Response:
        return json_response({"error": "Unauthorized"}, status=401)

    def drifted_body(self) -> Any:
        """Valid JSON of a shape the real API does not send (a renamed field)."""
        return {"data": []}

    def tick(self) -> None:
        """Advance the demo world one step."""
        self.ticks += 1

    # --- scripted faults and the request log ------------------------------------------

    def fail_next(self, fault: Fault | str, times: int = 1, *, retry_after: str | None = "1",
                  delay: float = 5.0, status: int | None = None,
                  matching: str | None = None) -> None:
        """Answer the next `times` API requests with `fault` (after any already queued);
        with `matching`, only requests whose path and query contain that text (one lookup
        among several, the second request of a poll)."""
        spec = ScriptedFault(fault=Fault(fault), retry_after=retry_after, delay=delay,
                             status=status, matching=matching)
        self._faults.extend([spec] * times)

    def _take_fault(self, request: web.Request) -> ScriptedFault | None:
        for spec in self._faults:
            if spec.matching is None or spec.matching in request.path_qs:
                self._faults.remove(spec)
                return spec
        return None

    def request_count(self, path: str | None = None) -> int:
        """Requests served so far, or those whose path ends with `path`."""
        return sum(1 for r in self.requests if path is None or r.path.endswith(path))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = request.path not in self.unguarded
        fault = self._take_fault(request) if guarded and self._faults else None
        self.requests.append(RecordedRequest(
            method=request.method, path=request.path, query=dict(request.query),
            headers=dict(request.headers), fault=fault.fault if fault else None,
        ))
        if fault is not None:
            answer = await self._answer_fault(fault)
            if answer is not None:
                return answer
        if guarded:
            refusal = self.authorize(request)
            if refusal is not None:
                return refusal
        return await handler(request)

    async def _answer_fault(self, spec: ScriptedFault) -> web.Response | None:
        match spec.fault:
            case Fault.SERVER_ERROR:
                return json_response({"error": "Internal Server Error"}, status=spec.status or 500)
            case Fault.RATE_LIMITED:
                headers = {"Retry-After": spec.retry_after} if spec.retry_after else None
                return json_response({"error": "Too Many Requests"}, 429, headers)
            case Fault.MALFORMED_JSON:
                return web.Response(text='{"results": [{"id": "x", "sta', status=200,
                                    content_type="application/json")
            case Fault.HTML_ERROR:
                return web.Response(text=_HTML, status=spec.status or 200,
                                    content_type="text/html")
            case Fault.UNAUTHORIZED:
                return self.unauthorized()
            case Fault.WRONG_SHAPE:
                return json_response(self.drifted_body())
            case Fault.SLOW:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), spec.delay)
                return None


def basic_of(request: web.Request) -> tuple[str, str] | None:
    """The (user, password) of a Basic Authorization header, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def bearer_of(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class Plans:
    """The scripted demo steps of each job: each tick applies the next step of every job.

    A step is a dict of raw field changes; the key `"_gone"` deletes the job instead.
    """

    def __init__(self) -> None:
        self._steps: dict[str, deque[dict[str, Any]]] = {}

    def plan(self, job_id: str, steps: Iterable[dict[str, Any]]) -> None:
        self._steps.setdefault(job_id, deque()).extend(steps)

    def idle(self, job_id: str) -> bool:
        return not self._steps.get(job_id)

    def advance(self) -> list[tuple[str, dict[str, Any]]]:
        due = [(job_id, steps.popleft()) for job_id, steps in self._steps.items() if steps]
        for job_id in [j for j, steps in self._steps.items() if not steps]:
            del self._steps[job_id]
        return due

    def drop(self, job_id: str) -> None:
        self._steps.pop(job_id, None)


def hold(times: int) -> list[dict[str, Any]]:
    """`times` ticks without change."""
    return [{} for _ in range(times)]


def ramp(rng: random.Random, start: float, end: float, *, low: float, high: float
         ) -> list[float]:
    """Increasing values from `start` to exactly `end` in random steps of low..high."""
    values: list[float] = []
    value = start
    while value < end:
        value = min(end, value + rng.uniform(low, high))
        values.append(round(value, 2))
    return values
