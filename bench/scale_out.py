"""Scale-out benchmark: poll capacity with 1, 2 and 3 `bridge run` instances on one PostgreSQL.

Six Zendesk simulators of 100 jobs each, polled every 20 ms (far faster than one instance
can poll them all, so capacity, not the interval, is what is measured), while a driver
moves jobs through queued -> working -> completed. For each N, N instances run on a fresh
schema for a fixed window; the figures are:

- capacity: jobs polled per second, summed over the sources (the simulators count list
  requests: one per poll), and its ratio to one instance's in the same run;
- duplicates: transitions the webhook receiver got more than once (by source, job, from
  and to, not by webhook-id), which must be 0;
- polls per source: how evenly the sources were spread.

The simulators and the receiver run in this process, the instances in their own, all on
this machine's cores: on 2 cores N instances plus the simulators share 2 CPUs, so a ratio
near N is not possible here; the ratio shows what the leases do not cost.
Run: `.venv/bin/python -m bench.scale_out` (PostgreSQL at $BRIDGE_TEST_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/test; skipped with a note when unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import psycopg

from bridge.resources import bundled_templates
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator

PG_URL = os.environ.get("BRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SOURCES = 6
JOBS = 100
WINDOW = 8.0
WARMUP = 2.0
EMAIL, TOKEN = "bench@example.com", "zd-bench-token"


def _config(state: str, sims: list[ZendeskSimulator], hook: str) -> str:
    parts = [f"""
[bridge]
state = "{state}"
listen = "127.0.0.1:0"
templates = "{bundled_templates()}"
"""]
    for n, sim in enumerate(sims):
        parts.append(f"""
[[sources]]
name = "zd{n}"
kind = "zendesk"
base_url = "{sim.base_url}"
interval = "20ms"
timeout = "5s"
[sources.auth]
type = "basic"
username = "{EMAIL}/token"
password = "{TOKEN}"
""")
    parts.append(f"""
[[sinks]]
name = "hook"
kind = "webhook"
url = "{hook}"

[[rules]]
name = "moves"
on = "transition"
template = "transition.slack.j2"
notify = ["hook"]
""")
    return "".join(parts)


async def _drive(sims: list[ZendeskSimulator], rng: random.Random) -> None:
    plans = {(n, f"job-{j:03d}"): ["working", "completed"] for n in range(len(sims))
             for j in range(JOBS)}
    while True:
        await asyncio.sleep(0.02)
        moving = [key for key, rest in plans.items() if rest]
        if not moving:
            return
        n, job = rng.choice(moving)
        sims[n].set_job(job, status=plans[(n, job)].pop(0))


async def _one(instances: int, workdir: Path) -> tuple[float, int, list[int], int]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            return await _run(instances, workdir,
                              f"{PG_URL}?options={quote(f'-csearch_path={schema}')}")
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def _run(instances: int, workdir: Path, state: str) -> tuple[float, int, list[int], int]:
    async with contextlib.AsyncExitStack() as stack:
        sims = [await stack.enter_async_context(
            ZendeskSimulator(email=EMAIL, api_token=TOKEN, seed=n)) for n in range(SOURCES)]
        for sim in sims:
            for j in range(JOBS):
                sim.add_job(f"job-{j:03d}", status="queued")
        receiver = await stack.enter_async_context(WebhookReceiver())
        config = workdir / f"rules-{instances}.toml"
        config.write_text(_config(state, sims, receiver.url), encoding="utf-8")
        procs = []
        for n in range(instances):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "--log-level", "warning", "run", "--config",
                str(config), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                env={**os.environ, "BRIDGE_INSTANCE": f"bench-{n}"})
            procs.append(proc)
        try:
            await asyncio.sleep(WARMUP)  # start-up and lease spreading are not measured
            driving = asyncio.create_task(_drive(sims, random.Random(instances)))
            before = [sim.request_count("job_statuses.json") for sim in sims]
            await asyncio.sleep(WINDOW)
            polls = [sim.request_count("job_statuses.json") - b for sim, b in zip(sims, before,
                                                                                  strict=True)]
            driving.cancel()
            await asyncio.sleep(1.0)  # let the last deliveries arrive
        finally:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            for proc in procs:
                await proc.wait()
        moves: Counter[tuple[str, str, str, str]] = Counter()
        for request in receiver.requests:
            if 200 <= request.status < 300:
                data = json.loads(request.body)["data"]
                moves[(data["source"], data["job"]["id"], data["from"], data["to"])] += 1
        duplicates = sum(n - 1 for n in moves.values() if n > 1)
        return sum(polls) * JOBS / WINDOW, duplicates, polls, len(moves)


async def _main() -> None:
    try:
        async with await psycopg.AsyncConnection.connect(PG_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        print(f"   skipped: PostgreSQL not reachable at {PG_URL} ({exc})")
        return
    print(f"   {SOURCES} Zendesk sources x {JOBS} jobs, interval 20 ms, {WINDOW:g} s window")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for instances in (1, 2, 3):
            capacity, duplicates, polls, delivered = await _one(instances, Path(tmp))
            base = base or capacity
            print(f"   {instances} instance{'s' if instances > 1 else ' '}: "
                  f"{capacity:9,.0f} jobs polled/s ({capacity / base:.2f}x one instance), "
                  f"{duplicates} duplicates of {delivered} transitions delivered, "
                  f"polls per source {polls}", flush=True)


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
