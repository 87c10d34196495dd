"""What one webhook POST costs the sender's CPU: aiohttp's client beside a bare protocol.

`make bench-peer` prints this after its ratios, because it bounds them: the bridge sends one
POST per notification through aiohttp's `ClientSession` (its stack), so no change to the
bridge's own stages can bring its CPU per notification below this client's cost per POST.

In one run, on 127.0.0.1, against one minimal receiver process (`bench.peer_parts`' raw
receiver: an asyncio protocol that answers every request `200` at once, so the receiver is
never the limit):

- aiohttp: the session as `bridge run` makes it (one pooled `TCPConnector`, 64 connections
  per host) and the request as the webhook sink sends it (signed headers, a JSON body of a
  notification's size, a total timeout, no redirects);
- bare protocol: the same requests, keep-alive on the same number of connections, written
  and read (each answer up to its blank line) by a few lines of `asyncio.Protocol`: no HTTP
  library at all, what the event loop alone costs. A measure of the floor, not a client to ship: it
  does no TLS, proxies, chunked answers or error handling.

Figures: CPU time of this process (user + system) per request, after a warm-up.
Run alone: `.venv/bin/python -m bench.client_floor`.
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp

from bench import peer_parts as parts
from bridge.loop import loop_factory
from bridge.signing import decode_secret, signed_headers

REQUESTS = 20_000
WARM_UP = 1_000
CONNECTIONS = 64
BODY = (b'{"type":"job.appeared","timestamp":"2026-12-03T12:00:00Z","data":{"event_id":"'
        + b"e" * 40 + b'","rule":"appeared","source":"peer","from":null,"to":"running",'
        b'"text":"' + b"t" * 120 + b'","job":{"id":"b0000001","status":"running"},'
        b'"reason":null,"schema_version":1}}')

Send = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Floor:
    aiohttp_us: float
    bare_us: float

    def lines(self, alertmanager_cpu_ms: float | None = None) -> list[str]:
        lines = [
            f"one webhook POST, sender CPU: aiohttp {self.aiohttp_us:.0f} us, "
            f"bare asyncio protocol {self.bare_us:.0f} us "
            f"({self.aiohttp_us / self.bare_us:.1f}x)",
        ]
        if alertmanager_cpu_ms is not None:
            target_us = alertmanager_cpu_ms * 1000 * 0.5
            left = target_us - self.aiohttp_us
            verdict = (f"leaves {left:.0f} us for everything but the POST" if left > 0
                       else f"is {-left:.0f} us below the POST alone")
            lines.append(f"the CPU target (0.5x Alertmanager's {alertmanager_cpu_ms:.3f} ms = "
                         f"{target_us:.0f} us per notification) {verdict}")
        return lines


class _Answered(asyncio.Protocol):
    """One keep-alive connection of the bare client: one request at a time, each answer
    ended by its blank line (the raw receiver's answers have no body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        self._buffer = self._buffer[end + 4:]
        answer, self._answer = self._answer, None
        answer.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError("the receiver closed the connection"))

    def request(self, data: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._answer


async def _measure(send: Send) -> float:
    """CPU microseconds of this process per request, `CONNECTIONS` in flight."""
    queue = iter(range(WARM_UP + REQUESTS))
    started: list[float] = []

    async def lane() -> None:
        for n in queue:
            if n == WARM_UP:
                started.append(time.process_time())
            await send(n)

    await asyncio.gather(*(lane() for _ in range(CONNECTIONS)))
    return (time.process_time() - started[0]) / REQUESTS * 1e6


_KEY = decode_secret(parts.SECRET)


def _headers(n: int) -> dict[str, str]:
    return {"content-type": "application/json",
            **signed_headers(_KEY, f"msg_{n:08d}", int(time.time()), BODY)}


async def _with_aiohttp(url: str) -> float:
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit_per_host=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(n: int) -> None:
            async with session.post(url, data=BODY, headers=_headers(n), timeout=timeout,
                                    allow_redirects=False) as response:
                response.raise_for_status()

        return await _measure(send)


async def _with_bare_protocol(host: str, port: int) -> float:
    loop = asyncio.get_running_loop()
    idle: collections.deque[_Answered] = collections.deque()
    for _ in range(CONNECTIONS):
        _, connection = await loop.create_connection(_Answered, host, port)
        idle.append(connection)

    async def send(n: int) -> None:
        connection = idle.popleft()
        head = "".join([f"POST /hook HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Content-Length: {len(BODY)}\r\n",
                        *(f"{k}: {v}\r\n" for k, v in _headers(n).items()), "\r\n"])
        await connection.request(head.encode("latin-1") + BODY)
        idle.append(connection)

    try:
        return await _measure(send)
    finally:
        for connection in idle:
            if connection.transport is not None:
                connection.transport.close()


async def measure_floor() -> Floor:
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        receiver, url = parts.start_raw_receiver(Path(tmp))
        try:
            await parts.wait_ready(f"{url}/ready", receiver)
            _, _, port = url.rpartition(":")
            # Alternate, so a drift in the machine's speed shows in both figures alike.
            runs = [await _with_aiohttp(f"{url}/hook"),
                    await _with_bare_protocol(parts.HOST, int(port)),
                    await _with_aiohttp(f"{url}/hook"),
                    await _with_bare_protocol(parts.HOST, int(port))]
            return Floor(aiohttp_us=min(runs[0::2]), bare_us=min(runs[1::2]))
        finally:
            receiver.stop()


def run_floor() -> Floor:
    """`measure_floor` on the loop the bridge runs on (`BENCH_PEER_LOOP`, uvloop)."""
    with asyncio.Runner(loop_factory=loop_factory(parts.LOOP)) as runner:
        return runner.run(measure_floor())


def main() -> None:
    print("\n".join(run_floor().lines()))


if __name__ == "__main__":
    main()
