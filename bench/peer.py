"""`make bench-peer`: the bridge's push -> webhook path beside Alertmanager and a bare forwarder.

One after another, in one run, on 127.0.0.1: Alertmanager (Debian's
`prometheus-alertmanager`; every alert its own group, group_wait 0, no durability), the
bridge (`bridge run`: push input -> detect -> rule -> render -> SQLite outbox -> signed
webhook) and a bare aiohttp forwarder (no rules, templates or store), each delivering to
the same webhook receiver process (`bench.peer_parts`). For each:

- throughput: 20,000 distinct job observations pushed in batches of 100, 4 requests in
  flight; each is one `appeared` event, one rule, one webhook. From the first push to the
  last arrival at the receiver.
- CPU per notification: the peer process's user + system CPU during that burst, divided by
  the notifications delivered.
- latency: then 1,000 observations/s, paced (batches of 10 every 10 ms, open loop), for 5 s;
  p50/p99 from sending the push to its webhook arriving at the receiver.
- connections: distinct connections the peer opened to the receiver.

Then the ratios bridge/Alertmanager and bridge/forwarder, and what one webhook POST costs
the sender's CPU through aiohttp's client beside a bare asyncio protocol
(`bench.client_floor`): the bridge sends one POST per notification through aiohttp, so its
CPU per notification cannot go below that client's cost. Every process is stopped by its
PID; each phase has a deadline. Without Alertmanager (not installed and not root), its row
says why and the ratios against it are left out. `BENCH_PEER_N` scales the burst,
`BENCH_PEER_PEERS=bridge,forwarder` picks peers (`bridge-asyncio`, `forwarder-asyncio`: the
same on asyncio's own loop, the others running on `BENCH_PEER_LOOP`, default uvloop, and
compared with them), `BENCH_PEER_PYSPY=FILE` records a py-spy profile of the bridge (raw
collapsed stacks, `--gil`). `BENCH_PEER_ROUNDS` (default 3) repeats the whole sequence, each
round with its own receiver, and prints every round's rows and ratios and then the median of
the rounds' ratios: the machine's speed drifts between one peer's run and the next.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench import client_floor
from bench import peer_parts as parts
from bridge.signing import decode_secret, signed_headers

BURST = int(os.environ.get("BENCH_PEER_N", "20000"))
BATCH = 100
IN_FLIGHT = 4
PACED_RATE = 1_000
PACED_SECONDS = 5.0
PACED_BATCH = 10
PEERS = os.environ.get("BENCH_PEER_PEERS", "alertmanager,bridge,forwarder").split(",")
PHASE_DEADLINE = 180.0  # seconds for all of one phase's notifications to arrive
# The machine's speed drifts between one peer's run and the next (+-30% on a shared 2-core
# box), so one round's ratios can mislead: each round runs every peer once, in order, and
# the verdict is the median of the rounds' ratios.
ROUNDS = int(os.environ.get("BENCH_PEER_ROUNDS", "3"))

Post = Callable[[aiohttp.ClientSession, list[str]], Any]


@dataclass(slots=True)
class Result:
    name: str
    throughput: float | None = None
    cpu_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    connections: int | None = None
    note: str = ""


# --- how each peer takes a batch of job ids --------------------------------------------------


def alertmanager_post(url: str) -> Post:
    async def post(session: aiohttp.ClientSession, ids: list[str]) -> int:
        now = datetime.now(UTC)
        alerts = [{"labels": {"alertname": "job", "job_id": job_id},
                   "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
                  for job_id in ids]
        async with session.post(f"{url}/api/v2/alerts", json=alerts) as response:
            await response.read()
            return response.status

    return post


def bridge_post(url: str) -> Post:
    key = decode_secret(parts.SECRET)

    async def post(session: aiohttp.ClientSession, ids: list[str]) -> int:
        body = json.dumps([{"id": job_id, "status": "running"} for job_id in ids]).encode()
        headers = {"content-type": "application/json",
                   **signed_headers(key, f"msg_{uuid.uuid4().hex}", int(time.time()), body)}
        async with session.post(f"{url}/v1/events/peer", data=body, headers=headers) as response:
            await response.read()
            return response.status

    return post


def forwarder_post(url: str) -> Post:
    async def post(session: aiohttp.ClientSession, ids: list[str]) -> int:
        items = [{"id": job_id, "status": "running"} for job_id in ids]
        async with session.post(f"{url}/push", json=items) as response:
            await response.read()
            return response.status

    return post


# --- the load and what arrived ---------------------------------------------------------------


class Load:
    """Pushes batches of job ids at one peer and remembers when each id was sent."""

    def __init__(self, session: aiohttp.ClientSession, post: Post):
        self.session = session
        self.post = post
        self.sent: dict[str, float] = {}
        self.refused: list[int] = []

    async def send(self, ids: list[str]) -> None:
        at = time.monotonic()
        for job_id in ids:
            self.sent[job_id] = at
        status = await self.post(self.session, ids)
        if not 200 <= status < 300:
            self.refused.append(status)

    async def burst(self, prefix: str, total: int) -> None:
        batches = [[f"{prefix}{n:07d}" for n in range(start, min(start + BATCH, total))]
                   for start in range(0, total, BATCH)]
        queue = iter(batches)

        async def lane() -> None:
            for batch in queue:
                await self.send(batch)

        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))

    async def paced(self, prefix: str) -> int:
        total = int(PACED_RATE * PACED_SECONDS)
        pause = PACED_BATCH / PACED_RATE
        tasks = []
        started = time.monotonic()
        for n, start in enumerate(range(0, total, PACED_BATCH)):
            ids = [f"{prefix}{i:07d}" for i in range(start, start + PACED_BATCH)]
            tasks.append(asyncio.create_task(self.send(ids)))
            await asyncio.sleep(max(0.0, started + (n + 1) * pause - time.monotonic()))
        await asyncio.gather(*tasks)
        return total


async def arrived(session: aiohttp.ClientSession, receiver: str, peer: str, total: int) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE
    while time.monotonic() < deadline:
        async with session.get(f"{receiver}/count", params={"peer": peer}) as response:
            if int(await response.json()) >= total:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{peer}: not all {total:,} notifications arrived in {PHASE_DEADLINE:.0f}s")


async def report(session: aiohttp.ClientSession, receiver: str, peer: str) -> dict[str, Any]:
    async with session.get(f"{receiver}/report", params={"peer": peer}) as response:
        data: dict[str, Any] = await response.json()
        return data


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)]


async def measure(name: str, peer: str, process: parts.Process, post: Post,
                  receiver: str) -> Result:
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT * 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        load = Load(session, post)
        cpu_before = process.cpu()
        started = time.monotonic()
        await load.burst("b", BURST)
        await arrived(session, receiver, peer, BURST)
        cpu = process.cpu() - cpu_before
        burst = await report(session, receiver, peer)
        last = max(at for at, _ in burst["arrivals"])
        throughput = BURST / (last - started)
        paced = await load.paced("p")
        await arrived(session, receiver, peer, BURST + paced)
        got = await report(session, receiver, peer)
    latencies = [at - load.sent[job_id] for at, job_id in got["arrivals"]
                 if job_id.startswith("p")]
    ids = [job_id for _, job_id in got["arrivals"]]
    note = f"{len(ids) - len(set(ids))} duplicates" if len(ids) != len(set(ids)) else ""
    if load.refused:
        note += f" {len(load.refused)} pushes refused ({sorted(set(load.refused))})"
    return Result(name=name, throughput=throughput, cpu_ms=cpu / BURST * 1000,
                  p50_ms=statistics.median(latencies) * 1000,
                  p99_ms=_percentile(latencies, 0.99) * 1000,
                  connections=int(got["connections"]), note=note.strip())


async def run_peer(name: str, work: Path, receiver: str) -> Result:
    if name == "alertmanager":
        binary = parts.alertmanager_binary()
        if binary is None:
            return Result(name=name, note="skipped: prometheus-alertmanager is not installed "
                          "and cannot be (run as root on Debian to install it)")
        process, url = parts.start_alertmanager(binary, work, receiver)
        ready, post = f"{url}/-/ready", alertmanager_post(url)
    elif name.startswith("bridge"):
        process, url = parts.start_bridge(work, f"{receiver}/{name}", _loop_of(name))
        ready, post = f"{url}/readyz", bridge_post(url)
    else:
        process, url = parts.start_forwarder(work, f"{receiver}/{name}", _loop_of(name))
        ready, post = f"{url}/ready", forwarder_post(url)
    profiler = None
    try:
        await parts.wait_ready(ready, process)
        if name.startswith("bridge") and os.environ.get("BENCH_PEER_PYSPY"):
            profiler = parts.start_profiler(process, os.environ["BENCH_PEER_PYSPY"], work)
            await asyncio.sleep(1.0)  # py-spy attaches
        return await measure(name, name, process, post, receiver)
    except (RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
        return Result(name=name, note=f"failed: {exc}")
    finally:
        if profiler is not None:
            profiler.stop(signal.SIGINT)
        process.stop()


def _loop_of(name: str) -> str:
    """`bridge-asyncio` -> "asyncio"; a plain `bridge` runs on BENCH_PEER_LOOP."""
    _, _, loop = name.partition("-")
    return loop or parts.LOOP


# --- the table -------------------------------------------------------------------------------


def _cell(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(results: Sequence[Result]) -> str:
    lines = [
        f"{'':17} {'throughput/s':>12} {'CPU ms/notif':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'conns':>6}",
    ]
    for r in results:
        line = (f"{r.name:17} {_cell(r.throughput, ',.0f'):>12} {_cell(r.cpu_ms, '.3f'):>12} "
                f"{_cell(r.p50_ms, '.1f'):>8} {_cell(r.p99_ms, '.1f'):>8} "
                f"{_cell(r.connections, 'd'):>6}")
        lines.append(line + (f"  {r.note}" if r.note else ""))
    return "\n".join(lines)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else ours / theirs


def _shown(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


@dataclass(frozen=True, slots=True)
class Ratios:
    """The bridge against one peer in one round (None: a figure is missing)."""
    throughput: float | None
    cpu: float | None
    p99: float | None

    def line(self, peer: str, targets: str) -> str:
        return (f"bridge/{peer}: throughput {_shown(self.throughput)}, "
                f"CPU/notification {_shown(self.cpu)}, p99 {_shown(self.p99)}   "
                f"(targets: {targets})")


TARGETS = {"alertmanager": "throughput >= 1.5x, CPU <= 0.5x, p99 <= 1x",
           "forwarder": "throughput >= 0.75x"}


def ratios_of(results: Sequence[Result]) -> dict[str, Ratios | str]:
    """The bridge against each peer of `TARGETS` in one round; why not, where it cannot be."""
    by = {r.name: r for r in results}
    bridge = by.get("bridge")
    out: dict[str, Ratios | str] = {}
    for peer in TARGETS:
        other = by.get(peer, Result(name=peer, note="not run"))
        if bridge is None or bridge.throughput is None:
            out[peer] = bridge.note if bridge is not None else "bridge not run"
        elif other.throughput is None:
            out[peer] = other.note
        else:
            out[peer] = Ratios(_ratio(bridge.throughput, other.throughput),
                               _ratio(bridge.cpu_ms, other.cpu_ms),
                               _ratio(bridge.p99_ms, other.p99_ms))
    return out


def ratios(results: Sequence[Result]) -> str:
    if not any(r.name == "bridge" for r in results):
        return ""
    by = {r.name: r for r in results}
    lines = []
    for peer, figures in ratios_of(results).items():
        lines.append(figures.line(peer, TARGETS[peer]) if isinstance(figures, Ratios)
                     else f"bridge/{peer}: - ({figures})")
    for name in ("bridge", "forwarder"):  # the same peer on the other loop, when also run
        for other_name in (n for n in by if n.startswith(f"{name}-")):
            ours, theirs = by[name], by[other_name]
            lines.append(f"{name}/{other_name}: throughput "
                         f"{_shown(_ratio(ours.throughput, theirs.throughput))}, CPU/notification "
                         f"{_shown(_ratio(ours.cpu_ms, theirs.cpu_ms))}")
    return "\n".join(lines)


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def median_ratios(rounds: Sequence[Sequence[Result]]) -> str:
    """Each peer's ratios, the median over the rounds where both ran."""
    lines = []
    for peer in TARGETS:
        figures = [f for f in (ratios_of(r).get(peer) for r in rounds) if isinstance(f, Ratios)]
        if not figures:
            continue
        median = Ratios(_median([f.throughput for f in figures]),
                        _median([f.cpu for f in figures]), _median([f.p99 for f in figures]))
        lines.append(median.line(peer, TARGETS[peer]))
    return "\n".join(lines)


async def _round(work: Path) -> list[Result]:
    """Every peer once, one after another, delivering to a receiver of their own."""
    receiver_process, receiver = parts.start_receiver(work)
    try:
        await parts.wait_ready(f"{receiver}/ready", receiver_process)
        results = []
        for name in PEERS:
            (work / name).mkdir()
            print(f"   {name}...", flush=True)
            results.append(await run_peer(name, work / name, receiver))
        return results
    finally:
        receiver_process.stop()


async def _run() -> list[list[Result]]:
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        rounds = []
        for number in range(1, ROUNDS + 1):
            if ROUNDS > 1:
                print(f"   round {number} of {ROUNDS}", flush=True)
            work = Path(tmp) / f"round-{number}"
            work.mkdir()
            rounds.append(await _round(work))
        return rounds


def _labelled(rounds: Sequence[Sequence[Result]]) -> list[Result]:
    """One table's rows: `name #k` for round k when there are several."""
    if len(rounds) == 1:
        return list(rounds[0])
    return [replace(r, name=f"{r.name} #{number}")
            for number, results in enumerate(rounds, 1) for r in results]


def main() -> None:
    rounds = asyncio.run(_run())
    print(f"\n   {BURST:,} observations in batches of {BATCH} ({IN_FLIGHT} in flight), then "
          f"{PACED_RATE:,}/s paced for {PACED_SECONDS:.0f}s; one webhook each, 127.0.0.1"
          + (f"; {len(rounds)} rounds" if len(rounds) > 1 else "") + "\n")
    print(table(_labelled(rounds)))
    print()
    if len(rounds) == 1:
        print(ratios(rounds[0]))
    else:
        for number, results in enumerate(rounds, 1):
            print("\n".join(f"#{number} {line}" for line in ratios(results).splitlines()))
        print(f"\nmedian of {len(rounds)} rounds:")
        print(median_ratios(rounds))
    print("\n   the HTTP client's share (bench.client_floor)...", flush=True)
    alertmanager = _median([r.cpu_ms for results in rounds for r in results
                            if r.name == "alertmanager"])
    print("\n".join(client_floor.run_floor().lines(alertmanager)))


if __name__ == "__main__":
    main()
    sys.exit(0)
