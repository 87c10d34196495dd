"""The pieces `bench.soak` puts together: its config, the bridge child process, the faults.

The config is the bundled demo's `[bridge]` and four `[[sources]]` (its text up to the first
`[[sinks]]`), followed by two sinks of the soak's own and one rule per event kind, so every
event the bridge records must reach a receiver, and each message names the event and rule
it is for: the soak counts from the receivers' side what arrived, twice, or never.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from bridge.model import EventKind
from bridge.resources import demo_config
from bridge.simulators.base import Fault
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import Reply, WebhookReceiver
from bridge.simulators.world import DemoWorld

HOOK = "soak-hook"
SLACK = "soak-slack"
SECRET = "whsec_c29hay10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5YWI="
SLACK_TOKEN = "xoxb-soak-token"
# Every message says which event and rule it is for: "soak <event id> <rule>".
TEMPLATE = "soak {{ event.id }} {{ rule }}\n"
# Short waits between attempts: a row that failed while its sink was down is retried within
# the run rather than hours later (the default schedule), so "still pending" means stuck.
RETRY = '{ schedule = ["1s", "2s", "5s"], attempts = 100, max_age = "2h" }'
SOURCE_FAULTS = (Fault.SERVER_ERROR, Fault.RATE_LIMITED, Fault.SLOW, Fault.MALFORMED_JSON)


def write_config(folder: Path, env: dict[str, str]) -> Path:
    """The soak's rules.toml (and its template) in `folder`; `env` gets the sinks' values."""
    with demo_config() as demo:
        text = demo.read_text()
    head = text[: text.index("\n[[sinks]]")]
    sinks = f"""
[[sinks]]
name = "{HOOK}"
kind = "webhook"
url = "${{SOAK_HOOK_URL}}"
secret = "{SECRET}"
timeout = "3s"
retry = {RETRY}

[[sinks]]
name = "{SLACK}"
kind = "slack"
token = "{SLACK_TOKEN}"
base_url = "${{SOAK_SLACK_URL}}"
channel = "#soak"
mode = "post"
min_interval = "50ms"
timeout = "3s"
retry = {RETRY}
"""
    rules = "".join(f"""
[[rules]]
name = "every-{kind}"
on = "{kind}"
template = "soak.slack.j2"
notify = ["{HOOK}", "{SLACK}"]
""" for kind in EventKind)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "templates" / "soak.slack.j2").write_text(TEMPLATE)
    path = folder / "rules.toml"
    path.write_text(head + sinks + rules)
    env["BRIDGE_LISTEN"] = f"127.0.0.1:{free_port()}"
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BridgeChild:
    """`python -m bridge run` as a child process: started, killed with SIGKILL, restarted.

    Its log goes to a file (counted for tracebacks at the end); `peak_rss` keeps the
    highest resident set any incarnation reached (VmHWM, read just before it ends)."""

    def __init__(self, config: Path, env: dict[str, str], log_path: Path):
        self.config = config
        self.env = env
        self.log_path = log_path
        self.url = f"http://{env['BRIDGE_LISTEN']}"
        self.peak_rss = 0
        self.starts = 0
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "run", "--config", str(self.config),
                "--drain-timeout", "5", stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, env={**os.environ, **self.env},
            )
        self.starts += 1
        await self.wait_ready(session)

    async def wait_ready(self, session: aiohttp.ClientSession, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                raise RuntimeError(f"bridge exited with {self._proc.returncode}; "
                                   f"see {self.log_path}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{self.url}/readyz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"bridge not ready within {within:g}s; see {self.log_path}")

    def _note_rss(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)

    async def kill(self) -> None:
        """`kill -9`: nothing drained, nothing flushed beyond what was committed."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        await self._end(signal.SIGTERM)

    async def _end(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._note_rss()
        self._proc.send_signal(sig)
        await asyncio.wait_for(self._proc.wait(), 30)


async def source_faults(world: DemoWorld, rng: random.Random) -> None:
    """Every 1-3 s one simulated API answers its next 1-3 requests with a fault."""
    while True:
        await asyncio.sleep(rng.uniform(1, 3))
        simulator = rng.choice(world.simulators)
        simulator.fail_next(rng.choice(SOURCE_FAULTS), times=rng.randint(1, 3),
                            retry_after=rng.choice(["1", "0.5", "2"]), delay=3.0)


async def sink_faults(receiver: WebhookReceiver, slack: FakeSlack, rng: random.Random,
                      counts: dict[str, int]) -> None:
    """Every 5-15 s a sink fails for a while: 5xx, 429, slow answers, or it goes away."""
    while True:
        await asyncio.sleep(rng.uniform(5, 15))
        what = rng.choice(["hook-500", "hook-429", "hook-slow", "hook-down", "slack-429",
                           "slack-held"])
        counts[what] = counts.get(what, 0) + 1
        times = rng.randint(2, 8)
        if what == "hook-500":
            receiver.script([rng.choice([500, 502, 503])] * times)
        elif what == "hook-429":
            receiver.script([Reply(status=429, headers={"Retry-After": "1"})] * times)
        elif what == "hook-slow":
            receiver.script([Reply(delay=4.0)] * times)  # past the sink's 3 s timeout
        elif what == "hook-down":
            await receiver.stop()
            try:
                await asyncio.sleep(rng.uniform(5, 15))
            finally:
                await receiver.start()
        elif what == "slack-429":
            slack.rate_limit(times, retry_after=1)
        else:
            slack.hold()
            try:
                await asyncio.sleep(rng.uniform(2, 5))
            finally:
                slack.release()


async def tick_world(world: DemoWorld, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        world.tick()
