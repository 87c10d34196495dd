"""Nothing lost with group commit: `kill -9` the bridge while pushes are in flight.

A `bridge run` child process takes signed pushes (`POST /v1/events/ingest`, batches of
distinct jobs, several requests at once so they share transactions) and sends one webhook
per job to a receiver that verifies every signature with `standardwebhooks`. The bridge is
killed with SIGKILL at a random moment while the pushers keep going, then restarted on the
same SQLite file. Every push that was answered 2xx must reach the receiver, and every job's
webhook must carry one webhook-id however often it came (at-least-once, same id).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import time
import uuid
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from bridge.signing import decode_secret, signed_headers
from bridge.simulators.webhook_receiver import Reply, WebhookReceiver
from tests.crash_support import SECRET, TEMPLATES, BridgeProcess, eventually

PUSH_SECRET = "whsec_cHVzaC1zZWNyZXQtZm9yLWNyYXNoLXRlc3Rz"
LANES = 4
BATCH = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(directory: Path, port: int, receiver: str) -> Path:
    path = directory / "rules.toml"
    path.write_text(f"""
[bridge]
state = "sqlite:///{directory / 'state.db'}"
listen = "127.0.0.1:{port}"
templates = "{TEMPLATES}"

[[sources]]
name = "ingest"
kind = "push"
secret = "{PUSH_SECRET}"

[[sinks]]
name = "pager"
kind = "webhook"
url = "{receiver}"
secret = "{SECRET}"
[sinks.retry]
schedule = ["200ms"]
attempts = 100

[[rules]]
name = "new-job"
on = "appeared"
template = "appeared.slack.j2"
notify = ["pager"]
""")
    return path


class Pushers:
    """Lanes pushing batches of new job ids until stopped; remembers what was answered 2xx."""

    def __init__(self, url: str, seed: int):
        self.url = url
        self.key = decode_secret(PUSH_SECRET)
        self.accepted: set[str] = set()
        self.sent = 0
        self.prefix = f"s{seed}"
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._lane(session, lane) for lane in range(LANES)))

    def stop(self) -> None:
        self._stop.set()

    async def _lane(self, session: aiohttp.ClientSession, lane: int) -> None:
        n = 0
        while not self._stop.is_set():
            ids = [f"{self.prefix}-l{lane}-{n + i:05d}" for i in range(BATCH)]
            n += BATCH
            body = json.dumps([{"id": i, "status": "running"} for i in ids]).encode()
            headers = {"content-type": "application/json",
                       **signed_headers(self.key, f"msg_{uuid.uuid4().hex}", int(time.time()),
                                        body)}
            try:
                async with session.post(self.url, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if 200 <= response.status < 300:
                        self.accepted.update(ids)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.05)  # the bridge is down: its successor takes over
            self.sent += 1


def _job_id(body: bytes) -> str:
    return str(json.loads(body)["data"]["job"]["id"])


async def push_crash_iteration(directory: Path, seed: int) -> tuple[int, int]:
    """One kill while pushing; returns (jobs accepted, requests repeated after the kill)."""
    rng = random.Random(seed)
    port = _free_port()
    async with WebhookReceiver(secret=SECRET) as receiver:
        # A slow receiver keeps deliveries in flight, so the kill can cut one short.
        receiver.script([], then=Reply(status=200, delay=rng.uniform(0.0, 0.1)))
        config = _config(directory, port, receiver.url)
        first = await BridgeProcess(config, log_level="warning").start()
        second = BridgeProcess(config, log_level="warning")
        pushers = Pushers(f"http://127.0.0.1:{port}/v1/events/ingest", seed)
        try:
            await eventually(lambda: _up(port), within=20, what="the bridge's HTTP server")
            pushing = asyncio.create_task(pushers.run())
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            first.kill()
            assert await first.wait() == -signal.SIGKILL
            accepted_before_kill = len(pushers.accepted)
            await second.start()
            await eventually(lambda: _up(port), within=20, what="the restarted bridge")
            await asyncio.sleep(0.3)  # pushes to the successor, too
            pushers.stop()
            await pushing
            accepted = set(pushers.accepted)

            def delivered() -> set[str]:
                return {_job_id(r.body) for r in receiver.requests if r.status == 200}

            async def all_arrived() -> bool:
                return accepted <= delivered()

            await eventually(all_arrived, within=30, what="every accepted push delivered")
            second.terminate()
            assert await second.wait() == 0, second.log()
        finally:
            await first.aclose()
            await second.aclose()
    assert accepted_before_kill > 0, "the kill came before any push was accepted"
    ids_per_job: dict[str, set[str | None]] = defaultdict(set)
    for request in receiver.requests:
        assert request.verified is True
        ids_per_job[_job_id(request.body)].add(request.webhook_id)
    doubled = {job: ids for job, ids in ids_per_job.items() if len(ids) != 1}
    assert not doubled, f"jobs sent with different webhook-ids: {doubled}"
    repeats = len(receiver.requests) - len(ids_per_job)
    return len(accepted), repeats


async def _up(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


@pytest.mark.timeout(120)
async def test_kill_9_while_pushing_loses_no_accepted_push(tmp_path: Path) -> None:
    accepted, _ = await push_crash_iteration(tmp_path, seed=1)
    assert accepted > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_while_pushing_ten_times(tmp_path: Path) -> None:
    for seed in range(200, 210):
        directory = tmp_path / f"run-{seed}"
        directory.mkdir()
        accepted, _ = await push_crash_iteration(directory, seed)
        assert accepted > 0
