"""A webhook receiver for tests and `bridge demo`: records requests, answers as scripted.

`WebhookReceiver` is an aiohttp server on 127.0.0.1 that records every request (headers,
body, the status it answered), answers a scripted sequence of statuses (500 three times,
then 200; or 410 for good), and can be stopped and started again on the same port (held
meanwhile, so no other process takes it), as a receiver that crashes and comes back. With a
`secret` it verifies Standard Webhooks signatures with the independent `standardwebhooks`
package (a test dependency) and answers 401 to a bad one; without the package it refuses to
start (`MissingVerifier`), unless told `allow_own_verifier=True` (a bare `bridge demo`
may), so no test silently checks our signatures with our own code. With a `check` (or the
class-wide `default_check`, which the test suite sets to validate default bodies against
their published JSON Schema) it passes every recorded request to it and keeps what it
raises in `problems`, never changing the answer. Independent of the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

Verifier = Callable[[bytes, Mapping[str, str]], None]
Check = Callable[["ReceivedRequest"], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    headers: Mapping[str, str] | None = None
    body: str = ""
    # Seconds to wait before answering (a slow receiver); cut short by `stop()`.
    delay: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedRequest:
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int
    # True: signature checked and valid; False: checked and refused; None: not checked.
    verified: bool | None = None

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """`async with WebhookReceiver() as hook:` serves on `hook.url` until the block ends."""

    # The check of receivers made without one (tests/conftest.py: the schema check).
    default_check: ClassVar[Check | None] = None

    def __init__(self, *, secret: str | None = None, path: str = "/hook",
                 check: Check | None = None, allow_own_verifier: bool = False):
        self.path = path
        self.requests: list[ReceivedRequest] = []
        self.problems: list[str] = []
        self._check = check if check is not None else WebhookReceiver.default_check
        self._script: deque[Reply] = deque()
        self._default = Reply()
        self._verify: Verifier | None = None
        # Which package checks signatures: "standardwebhooks" (always, in tests), or
        # "bridge.signing" when `allow_own_verifier` and the test extra is not installed.
        self.verifier: str | None = None
        if secret is not None:
            self.verifier, self._verify = _verifier(secret, allow_own=allow_own_verifier)
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        # Bound, never listening: holds the port while the receiver is down (connections are
        # refused), so no other process on a busy machine is given it meanwhile.
        self._reserved: socket.socket | None = None
        self.port = 0

    async def start(self) -> None:
        """Serve; after a `stop()`, on the same port as before."""
        self._stopping.clear()
        if self._reserved is None:
            self._reserved = _reserve(self.port)
            self.port = int(self._reserved.getsockname()[1])
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        """Go down (connections refused), keeping the port for a later `start()`."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        """Stop and give the port up."""
        await self.stop()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def script(self, replies: Iterable[int | Reply], *, then: int | Reply = 200) -> None:
        """Answer the next requests with `replies` in order, and every later one with `then`."""
        self._script = deque(_reply(r) for r in replies)
        self._default = _reply(then)

    def delivered_ids(self) -> list[str]:
        """`webhook-id`s answered with 2xx, in order (a receiver de-duplicates on these)."""
        return [r.webhook_id or "" for r in self.requests if 200 <= r.status < 300]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified: bool | None = None
        reply = self._script.popleft() if self._script else self._default
        if self._verify is not None:
            try:
                self._verify(body, headers)
                verified = True
            except Exception:  # whatever the verifier raises, the answer is 401
                verified = False
                reply = Reply(status=401, body="invalid signature")
        received = ReceivedRequest(
            path=request.path, headers=headers, body=body, status=reply.status, verified=verified)
        self.requests.append(received)
        if self._check is not None:
            try:
                self._check(received)
            except Exception as exc:  # a check may fail in any way; the answer stays scripted
                self.problems.append(f"{received.webhook_id or request.path}: {exc}")
        async with self._changed:
            self._changed.notify_all()
        if reply.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.delay)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)


def _reserve(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:`port` (0: a free one) that never listens. With
    SO_REUSEADDR on it and on the server's socket, the server can listen on the port while
    it is held; the kernel gives it to no one else's `bind(port 0)`."""
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        reserved.bind(("127.0.0.1", port))
    except OSError:
        reserved.close()
        raise
    return reserved


def _reply(value: int | Reply) -> Reply:
    return value if isinstance(value, Reply) else Reply(status=value)


class MissingVerifier(RuntimeError):
    """The independent verifier (`standardwebhooks`) is not installed."""


def _verifier(secret: str, *, allow_own: bool) -> tuple[str, Verifier]:
    """The verifier and its name. Tests verify with the independent `standardwebhooks`
    package or not at all: verifying our signatures with our own code proves nothing."""
    try:
        from standardwebhooks.webhooks import Webhook
    except ImportError:
        if not allow_own:
            raise MissingVerifier(
                "the webhook receiver verifies signatures with the `standardwebhooks` package, "
                "which is not installed: `pip install -e '.[test]'` (or `make setup`)"
            ) from None
        from datetime import UTC, datetime

        from bridge.signing import decode_secret, verify

        key = decode_secret(secret)

        def ours(body: bytes, headers: Mapping[str, str]) -> None:
            verify(key, headers, body, now=datetime.now(UTC))

        return "bridge.signing", ours
    webhook = Webhook(secret)

    def theirs(body: bytes, headers: Mapping[str, str]) -> None:
        webhook.verify(body, dict(headers), json_parse=False)

    return "standardwebhooks", theirs
