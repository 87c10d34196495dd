"""A hostile HTTP server for tests: it answers whatever status, body and headers a test sets.

`HostileServer` listens on 127.0.0.1 (port 0) and answers every request, any method and
any path, with its current `answer` (or `by_path[path]` when set), so one server and one
client session can serve hundreds of fuzzed answers: a test sets `server.answer = ...` and
polls again. A body holding `{echo}` gets the request reflected into it (path, query, every
header value and the request body, JSON-escaped), as a hostile or careless API that quotes
the credentials it refused. Answers can be slow (`delay`, cut short when the server
stops), sent without a Content-Length (`chunked`), or cut off mid-body (`truncate_at`: the
connection closes).
Every request is recorded with its headers, so a test can see which credentials reached
which host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from aiohttp import web


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One scripted answer. `body` goes on the wire byte for byte."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False
    truncate_at: int | None = None

    def __repr__(self) -> str:
        # Hypothesis prints failing answers: a 200 kB body would drown the report.
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return (f"Answer(status={self.status}, body={body!r} ({len(self.body)} bytes), "
                f"content_type={self.content_type!r}, headers={dict(self.headers)!r}, "
                f"delay={self.delay}, chunked={self.chunked}, truncate_at={self.truncate_at})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def json_answer(value: Any, status: int = 200, headers: Mapping[str, str] | None = None
                ) -> Answer:
    """`value` as JSON (NaN and Infinity written as the literals a lenient server sends)."""
    return Answer(status=status, body=json.dumps(value).encode(), headers=dict(headers or {}))


def redirect(location: str, status: int = 302) -> Answer:
    return Answer(status=status, content_type=None, headers={"Location": location})


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    method: str
    path_qs: str
    headers: Mapping[str, str]
    body: bytes


class HostileServer:
    """`async with HostileServer() as server:` answers `server.answer` on `server.url`."""

    def __init__(self, answer: Answer | None = None, *, host: str = "127.0.0.1") -> None:
        self.answer = answer or json_answer({})
        self.by_path: dict[str, Answer] = {}
        self.requests: list[Seen] = []
        self.host = host
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{port}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def seen_headers(self) -> list[Mapping[str, str]]:
        return [r.headers for r in self.requests]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(method=request.method, path_qs=request.path_qs,
                                  headers=dict(request.headers), body=await request.read()))
        answer = self.by_path.get(request.path, self.answer)
        if ECHO in answer.body:
            answer = replace(answer, body=answer.body.replace(ECHO, _echo(self.requests[-1])))
        if answer.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay)
        headers = dict(answer.headers)
        if answer.content_type is not None:
            headers["Content-Type"] = answer.content_type
        if answer.truncate_at is not None:
            return await self._truncated(request, answer, headers)
        if answer.chunked:
            response = web.StreamResponse(status=answer.status, headers=headers)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(answer.body), 256 * 1024):
                await response.write(answer.body[start:start + 256 * 1024])
            await response.write_eof()
            return response
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    async def _truncated(self, request: web.Request, answer: Answer,
                         headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, headers=headers)
        response.content_length = len(answer.body)
        await response.prepare(request)
        await response.write(answer.body[:answer.truncate_at])
        if request.transport is not None:
            request.transport.close()
        return response


ECHO = b"{echo}"


def _echo(seen: Seen) -> bytes:
    said = " ".join([seen.path_qs, *seen.headers.values(), seen.body.decode(errors="replace")])
    return json.dumps(said)[1:-1].encode()


def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
