"""The processes `bench.peer` starts: the receiver, the bare forwarder, and the three peers
(and `bench.client_floor`'s raw receiver).

Every process here runs on 127.0.0.1 only, is started with `subprocess.Popen` (so it has a
PID of its own, whose CPU time `/proc/PID/stat` tells) and is stopped by that PID: SIGTERM,
then SIGKILL after a few seconds. Each peer is bounded in time by the caller's deadlines.

The receiver is one aiohttp process for all three peers. For each notification it records
when it arrived (`time.monotonic()`, which on Linux is one clock for every process, so the
load generator's send times compare with it) and the id of the job it is about; and the
peer address of every connection it was sent on, to count connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp import web

from bridge.loop import loop_factory

HOST = "127.0.0.1"
# The event loop of the bridge and of the forwarder (the same for both, to compare like with
# like): uvloop, `bridge run`'s default, or asyncio's own. A peer named `bridge-asyncio` or
# `forwarder-uvloop` (BENCH_PEER_PEERS) runs on the loop its name says, to compare loops.
LOOP = os.environ.get("BENCH_PEER_LOOP", "uvloop")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STOP_GRACE = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat(5))
    return ticks / os.sysconf("SC_CLK_TCK")


class Process:
    """A child process, stopped by its PID; its output goes to a log file for post-mortems."""

    def __init__(self, name: str, argv: Sequence[str], log: Path):
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.popen.poll() is not None:
            return
        os.kill(self.pid, how)
        try:
            self.popen.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(STOP_GRACE)

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


async def wait_ready(url: str, process: Process, within: float = 20.0) -> None:
    """Until `url` answers 200, the process died, or `within` seconds passed."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited at start-up:\n{process.tail()}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{process.name} not ready after {within:.0f}s:\n{process.tail()}")


# --- the receiver ---------------------------------------------------------------------------


def _job_ids(path: str, data: Any) -> list[str]:
    """The job ids one delivered request is about, in each peer's own body shape."""
    if path == "/alertmanager":
        return [alert["labels"]["job_id"] for alert in data["alerts"]]
    if path.startswith("/bridge"):
        return [data["data"]["job"]["id"]]
    return [data["id"]]


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def receiver_app() -> web.Application:
    """POST /<peer>: record; GET /report?peer=P: what P delivered; the counts reset per peer."""
    arrivals: dict[str, list[tuple[float, str]]] = {}
    peers: dict[str, set[Any]] = {}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.monotonic()
        path = request.path
        ids = _job_ids(path, json.loads(body))
        got = arrivals.setdefault(path, [])
        got.extend((at, job_id) for job_id in ids)
        peers.setdefault(path, set()).add(request.transport.get_extra_info("peername")
                                          if request.transport else None)
        return web.Response(status=200)

    async def report(request: web.Request) -> web.Response:
        path = "/" + request.query["peer"]
        return web.json_response({"arrivals": arrivals.get(path, []),
                                  "connections": len(peers.get(path, ()))})

    async def count(request: web.Request) -> web.Response:
        return web.json_response(len(arrivals.get("/" + request.query["peer"], [])))

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/report", report)
    app.router.add_get("/count", count)
    app.router.add_get("/ready", ready)
    app.router.add_post("/{peer}", receive)
    return app


# --- the bare forwarder ---------------------------------------------------------------------


def forwarder_app(target: str) -> web.Application:
    """What Python and aiohttp allow: each pushed item POSTed as is to `target`, from one
    pooled session, answered 202 at once; no rules, templates, signing or store."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    tasks: set[asyncio.Task[None]] = set()

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def forward(session: aiohttp.ClientSession, item: Any) -> None:
        try:
            async with session.post(target, data=json.dumps(item).encode(),
                                    headers={"content-type": "application/json"}) as response:
                await response.read()
        except aiohttp.ClientError:
            pass  # the bench counts what arrived; a bare forwarder has no retries

    async def push(request: web.Request) -> web.Response:
        session = request.app["session"]
        for item in await request.json():
            task = asyncio.create_task(forward(session, item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return web.Response(status=202)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/push", push)
    app.router.add_get("/ready", ready)
    return app


# --- the peers ------------------------------------------------------------------------------


def alertmanager_binary() -> str | None:
    """Debian's Alertmanager, installed with apt-get when missing and we are root."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("   installing prometheus-alertmanager with apt-get (root)...", flush=True)
    for argv in (["apt-get", "install", "-y", "-q", "prometheus-alertmanager"],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "prometheus-alertmanager"]):
        done = subprocess.run(argv, capture_output=True, timeout=600, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("prometheus-alertmanager")
        if done.returncode == 0 and found:
            return found
    return None


ALERTMANAGER_CONFIG = """\
route:
  receiver: hook
  group_by: ['...']        # every alert its own group
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 1000h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: false
"""


def start_alertmanager(binary: str, work: Path, receiver: str) -> tuple[Process, str]:
    port = free_port()
    (work / "am.yml").write_text(ALERTMANAGER_CONFIG.format(url=f"{receiver}/alertmanager"))
    (work / "am-data").mkdir()
    process = Process("alertmanager", [
        binary, f"--config.file={work / 'am.yml'}", f"--storage.path={work / 'am-data'}",
        f"--web.listen-address={HOST}:{port}", "--cluster.listen-address=", "--log.level=warn",
    ], work / "alertmanager.log")
    return process, f"http://{HOST}:{port}"


BRIDGE_CONFIG = """\
[bridge]
state = "sqlite:///{state}"
listen = "{host}:{port}"

[[sources]]
name = "peer"
kind = "push"
secret = "{secret}"
id = "id"
state = "status"

[[sinks]]
name = "receiver"
kind = "webhook"
url = "{receiver}"
secret = "{secret}"

[[rules]]
name = "appeared"
on = "appeared"
template = "appeared.slack.j2"
notify = ["receiver"]
"""


def start_bridge(work: Path, receiver: str, loop: str = LOOP) -> tuple[Process, str]:
    """`bridge run` on `loop`, delivering to `receiver` (the receiver's URL for this peer)."""
    port = free_port()
    config = work / "rules.toml"
    config.write_text(BRIDGE_CONFIG.format(state=work / "state.db", host=HOST, port=port,
                                           secret=SECRET, receiver=receiver))
    process = Process("bridge", [sys.executable, "-m", "bridge", "run", "--config", str(config),
                                 "--loop", loop], work / "bridge.log")
    return process, f"http://{HOST}:{port}"


def start_profiler(target: Process, out: str, work: Path) -> Process:
    """py-spy (in the venv, not a dependency) sampling `target` until stopped with SIGINT;
    raw collapsed stacks, one line per distinct stack with its sample count. `--gil` by
    default (only the thread holding the GIL: where the Python CPU goes);
    `BENCH_PEER_PYSPY_ARGS` replaces it (e.g. "--idle" to see waiting threads too)."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    extra = os.environ.get("BENCH_PEER_PYSPY_ARGS", "--gil").split()
    return Process("py-spy", [spy, "record", "--format", "raw", "-r", "200", *extra, "-o", out,
                              "--pid", str(target.pid)], work / "py-spy.log")


def start_receiver(work: Path) -> tuple[Process, str]:
    port = free_port()
    process = Process("receiver", [sys.executable, "-m", "bench.peer_parts", "receiver",
                                   str(port)], work / "receiver.log")
    return process, f"http://{HOST}:{port}"


def start_forwarder(work: Path, receiver: str, loop: str = LOOP) -> tuple[Process, str]:
    """The bare forwarder on `loop`, forwarding to `receiver` (this peer's URL there)."""
    port = free_port()
    process = Process("forwarder", [sys.executable, "-m", "bench.peer_parts", "forwarder",
                                    str(port), receiver, loop],
                      work / "forwarder.log")
    return process, f"http://{HOST}:{port}"


# --- the raw receiver (bench.client_floor) --------------------------------------------------


class _Answer(asyncio.Protocol):
    """Answers every request `200` with an empty body as soon as its body is in: no HTTP
    library, so that the receiver is never what limits a client being measured."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


async def _serve_raw(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Answer, HOST, port)
    await server.serve_forever()


def start_raw_receiver(work: Path) -> tuple[Process, str]:
    """The raw receiver; its URL (any path answers, `/ready` too)."""
    port = free_port()
    process = Process("raw receiver", [sys.executable, "-m", "bench.peer_parts", "raw-receiver",
                                       str(port)], work / "raw-receiver.log")
    return process, f"http://{HOST}:{port}"


def main(argv: Sequence[str]) -> None:
    role, port = argv[0], int(argv[1])
    if role == "receiver":
        web.run_app(receiver_app(), host=HOST, port=port, access_log=None, print=None)
        return
    if role == "raw-receiver":
        asyncio.run(_serve_raw(port))
        return
    app, loop = forwarder_app(argv[2]), loop_factory(argv[3])()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main(sys.argv[1:])
