"""Delivery benchmark: outbox rows on SQLite -> DeliveryWorkers -> webhook sink -> receiver.

The real path: notifications committed with `store.commit_poll` (as a poll commits them), the
delivery workers of `bridge.deliver`, the signed webhook sink on one aiohttp session, and
the test `WebhookReceiver` on 127.0.0.1 in a process of its own, as a receiver would be.

Two figures:
- throughput: a backlog of rows (many jobs, several rows each) drained, deliveries/s;
- latency: rows committed at a steady rate while the workers run; p50/p99 from the row's
  creation (the commit) to its delivery (`mark_delivered`).

Aim: at least 2,000 deliveries/s on a 2-core machine.
Run: `.venv/bin/python -m bench.delivery`; `BENCH_PROFILE=tottime` (or `cumulative`) also
prints a cProfile of the drain, sorted so.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import multiprocessing
import os
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from bridge.config.schema import RetryPolicy, WebhookSink
from bridge.deliver import DeliveryWorkers
from bridge.metrics import Metrics
from bridge.model import DeliveryStatus, EventKind, Notification
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.sinks.webhook import WebhookNotifier
from bridge.store.base import PollCommit, Store
from bridge.store.sqlite import SqliteStore

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BACKLOG = 5_000
JOBS = 500
STREAM_RATE = 1_000  # rows per second while measuring latency
STREAM_SECONDS = 3.0
STREAM_BATCH = 20  # rows per commit (one poll's worth)


def _notification(n: int) -> Notification:
    job = f"job-{n % JOBS:04d}"
    event_id = f"evt_{n:08d}"
    body = json.dumps({
        "type": "job.transition",
        "timestamp": "2026-11-23T10:00:00Z",
        "data": {"event_id": event_id, "rule": "job-failed", "source": "zendesk",
                 "from": "running", "to": "failed", "text": f"zendesk job {job} failed",
                 "job": {"id": job, "state": "failed", "raw_state": "failed", "progress": 40,
                         "message": "Printer on fire", "url": None, "fields": {}}},
    })
    return Notification(event_id=event_id, rule="job-failed", sink="pager", source="zendesk",
                        job_id=job, payload={"text": f"zendesk job {job} failed", "body": body},
                        on=EventKind.TRANSITION, terminal=True, state="failed")


async def _commit(store: Store, first: int, count: int, batch: int = 100) -> None:
    for start in range(first, first + count, batch):
        rows = [_notification(n) for n in range(start, min(start + batch, first + count))]
        await store.commit_poll(PollCommit(source="zendesk", notifications=rows,
                                           at=datetime.now(UTC)))


async def _measure(path: Path, url: str) -> tuple[float, list[float]]:
    store = SqliteStore(str(path))
    await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            rig = _Rig(store, session, url)
            try:
                return await _throughput(rig), await _latency(rig)
            finally:
                await rig.workers.stop()
    finally:
        await store.close()


class _Rig:
    """A store and the workers, wired as `Bridge` wires them, sending to `url`."""

    def __init__(self, store: Store, session: aiohttp.ClientSession, url: str):
        config = WebhookSink(name="pager", kind="webhook", url=SecretStr(url),
                             secret=SecretStr(SECRET))
        self.store = store
        self.metrics = Metrics()
        self.workers = DeliveryWorkers(
            store=store,
            sinks={"pager": WebhookNotifier(config, session)},
            policies={"pager": RetryPolicy()},
            metrics=self.metrics,
            clock=lambda: datetime.now(UTC),
        )

    def count(self) -> int:
        return int(self.metrics.registry.get_sample_value(
            "bridge_deliveries_total", {"sink": "pager"}) or 0)

    async def delivered(self, total: int) -> None:
        # The workers' own counter, read in-process: asking the store instead would compete
        # with the workers for its one connection and slow down what is measured.
        while self.count() < total:  # noqa: ASYNC110
            await asyncio.sleep(0.002)


async def _throughput(rig: _Rig) -> float:
    await _commit(rig.store, 0, BACKLOG)
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    rig.workers.start()
    await rig.delivered(BACKLOG)
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(25)
    return BACKLOG / (time.perf_counter() - started)


async def _latency(rig: _Rig) -> list[float]:
    first = BACKLOG
    total = int(STREAM_RATE * STREAM_SECONDS)
    pause = STREAM_BATCH / STREAM_RATE
    started = time.perf_counter()
    for n, start in enumerate(range(first, first + total, STREAM_BATCH)):
        await _commit(rig.store, start, STREAM_BATCH, STREAM_BATCH)
        rig.workers.wake()
        await asyncio.sleep(max(0.0, started + (n + 1) * pause - time.perf_counter()))
    await rig.delivered(BACKLOG + total)
    rows = await rig.store.list_outbox(DeliveryStatus.DELIVERED, limit=BACKLOG + total)
    streamed = [r for r in rows if int(r.notification.event_id[4:]) >= first]
    return sorted((r.delivered_at - r.created_at).total_seconds()  # type: ignore[operator]
                  for r in streamed)


def _serve_receiver(conn: Connection) -> None:
    """The receiver's own process: serve until told to stop, then report what it got."""

    async def serve() -> None:
        async with WebhookReceiver(secret=None) as receiver:
            conn.send(receiver.url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send(receiver.delivered_ids())

    asyncio.run(serve())


async def _run() -> None:
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_serve_receiver, args=(theirs,))
    child.start()
    try:
        url: str = await asyncio.to_thread(ours.recv)
        with tempfile.TemporaryDirectory() as tmp:
            rate, latencies = await _measure(Path(tmp) / "state.db", url)
        ours.send("stop")
        ids: list[str] = await asyncio.to_thread(ours.recv)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    print(f"   throughput: {rate:,.0f} deliveries/s ({BACKLOG:,} rows over {JOBS} jobs; "
          f"aim >= 2,000/s)")
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"   latency at {STREAM_RATE:,} rows/s: p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms (outbox row created -> delivered, {len(latencies):,} rows)")
    print(f"   receiver: {len(ids):,} requests, {len(set(ids)):,} distinct webhook-ids")


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()
