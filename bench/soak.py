"""`make soak`: the bridge for minutes under random faults and `kill -9`, counted from the
receivers' side.

The demo's four simulated APIs (JTL, Terminal, eSales, Zendesk) tick and answer random
faults (500, 429, slow, malformed JSON); a webhook receiver (verifying signatures with
`standardwebhooks`) and a fake Slack fail and recover (5xx, 429, slow answers, the receiver
gone for seconds, Slack holding its answers). `python -m bridge run` runs as a child process
and is killed with SIGKILL every `--kill-every` seconds, then restarted on the same state
database. After `--minutes` the faults stop, the world stops changing, the bridge drains
and is stopped, and the soak compares what the bridge committed (its events and outbox rows)
with what the receivers got:

    transitions made     transition events the bridge recorded
    notifications        outbox rows it committed (one per event, rule and sink)
    delivered            of those, how many the receivers got (by webhook-id; by the
                         "soak <event> <rule>" text of each Slack message)
    duplicates           deliveries received more than once (at-least-once after a kill)
    lost                 committed, not received, not dead-lettered: 0 expected
    peak memory          the bridge process's highest resident set (VmHWM)

Run: `make soak` (4 minutes) or `.venv/bin/python -m bench.soak --minutes 10`. Not part of
`make test` or `make bench`. Exit 1 when anything was lost or a traceback was logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.soak_parts import (
    HOOK,
    SECRET,
    SLACK,
    SLACK_TOKEN,
    BridgeChild,
    sink_faults,
    source_faults,
    tick_world,
    write_config,
)
from bridge.model import DeliveryStatus, EventKind
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.world import DemoWorld
from bridge.store import open_store

# After the faults stop: the bridge is done when nothing is pending and no event came for
# longer than the demo's stall_after (20 s), so late `stalled` events are counted too.
QUIET_FOR = 25.0
SETTLE_AT_MOST = 180.0


@dataclass(slots=True)
class Report:
    minutes: float
    kills: int = 0
    events: Counter[str] = field(default_factory=Counter)
    committed: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    lost: dict[str, list[str]] = field(default_factory=dict)
    # Events recorded without a row for one of the sinks (every rule notifies both).
    unqueued: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    pending: int = 0
    unexpected: int = 0
    tracebacks: int = 0
    peak_rss: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    settle_seconds: float = 0.0

    def lines(self) -> list[str]:
        lost = sum(len(v) for v in self.lost.values())
        per_sink = ", ".join(f"{s} {self.delivered.get(s, 0):,}/{n:,}"
                             for s, n in sorted(self.committed.items()))
        dupes = ", ".join(f"{s} {n}" for s, n in sorted(self.duplicates.items()))
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.events.items()))
        return [
            f"soak: {self.minutes:g} min, bridge killed with SIGKILL {self.kills} times "
            f"(settled {self.settle_seconds:.0f} s after the faults stopped)",
            f"   transitions made:        {self.events.get('transition', 0):,} "
            f"(all events: {sum(self.events.values()):,}: {kinds})",
            f"   notifications committed: {sum(self.committed.values()):,}",
            f"   delivered (receivers):   {sum(self.delivered.values()):,} ({per_sink})",
            f"   duplicates:              {sum(self.duplicates.values())} ({dupes})",
            f"   lost:                    {lost} (dead-lettered {self.dead}, still pending "
            f"{self.pending}, received but never committed {self.unexpected})",
            f"   events never queued:     {sum(self.unqueued.values())} "
            "(an event without its row for a sink)",
            f"   tracebacks in the log:   {self.tracebacks}",
            f"   peak memory (bridge):    {self.peak_rss / 2**20:.1f} MiB RSS",
            "   faults: " + ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())),
        ]

    @property
    def ok(self) -> bool:
        return (not any(self.lost.values()) and not any(self.unqueued.values())
                and self.tracebacks == 0 and self.pending == 0)


async def soak(minutes: float, kill_every: float, seed: int, folder: Path) -> Report:
    rng = random.Random(seed)
    report = Report(minutes=minutes)
    env: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        # The world ticks only when the soak says so, so it can stop changing at the end.
        world = await stack.enter_async_context(DemoWorld(seed=seed, tick_interval=1e9))
        slack = await stack.enter_async_context(FakeSlack(token=SLACK_TOKEN))
        receiver = await stack.enter_async_context(WebhookReceiver(secret=SECRET))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        env |= {**world.env(), "SOAK_HOOK_URL": receiver.url, "SOAK_SLACK_URL": slack.api_url}
        config = write_config(folder, env)
        child = BridgeChild(config, env, folder / "bridge.log")
        await child.start(session)
        for import_id in world.esales_ids():  # eSales cannot list imports: watch them
            async with session.post(f"{child.url}/v1/watches",
                                    json={"source": "esales", "id": import_id}) as answer:
                answer.raise_for_status()
        tasks = [asyncio.create_task(tick_world(world, 1.0)),
                 asyncio.create_task(source_faults(world, rng)),
                 asyncio.create_task(sink_faults(receiver, slack, rng, report.faults))]
        try:
            ends_at = time.monotonic() + minutes * 60
            while (left := ends_at - time.monotonic()) > 0:
                await asyncio.sleep(min(kill_every, left))
                if time.monotonic() < ends_at:
                    await child.kill()
                    report.kills += 1
                    await child.start(session)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Healthy from here on: the receiver answers 200, Slack neither holds nor refuses.
        receiver.script([])  # and `sink_faults` started it again if it had stopped it
        slack.release()
        slack.rate_limit(0)
        started = time.monotonic()
        await _settle(session, child.url)
        report.settle_seconds = time.monotonic() - started
        await child.stop()
        report.peak_rss = child.peak_rss
        await _count(report, folder, receiver, slack)
    report.tracebacks = (folder / "bridge.log").read_text(errors="replace").count("Traceback")
    return report


async def _settle(session: aiohttp.ClientSession, url: str) -> None:
    """Until nothing is pending and no new event came for QUIET_FOR s (or SETTLE_AT_MOST)."""
    deadline = time.monotonic() + SETTLE_AT_MOST
    newest, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        async with session.get(f"{url}/v1/outbox", params={"limit": "1"}) as answer:
            pending = (await answer.json())["stats"]["pending"]
        async with session.get(f"{url}/v1/events", params={"limit": "1"}) as answer:
            events = (await answer.json())["events"]
        latest = events[0]["id"] if events else None
        if latest != newest:
            newest, quiet_since = latest, time.monotonic()
        if pending == 0 and time.monotonic() - quiet_since >= QUIET_FOR:
            return


async def _count(report: Report, folder: Path, receiver: WebhookReceiver,
                 slack: FakeSlack) -> None:
    store = open_store(f"sqlite:///{folder}/bridge-state.db")
    await store.open()
    try:
        events = await store.recent_events(limit=1_000_000)
        rows = await store.list_outbox(None, limit=10_000_000)
    finally:
        await store.close()
    report.events = Counter(str(event.on) for _, event in events)
    by_sink: dict[str, dict[str, str]] = {HOOK: {}, SLACK: {}}
    for row in rows:
        n = row.notification
        key = row.id if n.sink == HOOK else f"soak {n.event_id} {n.rule}"
        by_sink[n.sink][key] = row.id
        report.dead += row.status is DeliveryStatus.DEAD
        report.pending += row.status is DeliveryStatus.PENDING
    received = {
        HOOK: Counter(r.webhook_id or "" for r in receiver.requests
                      if 200 <= r.status < 300 and r.verified),
        SLACK: Counter(str(c.body.get("text", "")).strip()
                       for c in slack.calls_to("chat.postMessage")),
    }
    dead = {row.id for row in rows if row.status is DeliveryStatus.DEAD}
    event_ids = {event.id for _, event in events}
    for sink in by_sink:
        queued = {row.notification.event_id for row in rows if row.notification.sink == sink}
        report.unqueued[sink] = len(event_ids - queued)
    for sink, expected in by_sink.items():
        got = received[sink]
        report.committed[sink] = len(expected)
        report.delivered[sink] = sum(1 for key in expected if key in got)
        report.duplicates[sink] = sum(n - 1 for key, n in got.items() if key in expected)
        report.lost[sink] = [row_id for key, row_id in expected.items()
                             if key not in got and row_id not in dead]
        report.unexpected += sum(1 for key in got if key not in expected)
    if not any(e == str(EventKind.TRANSITION) for e in report.events):
        print("warning: no transition was recorded; is the world ticking?", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--kill-every", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the state, config and log here")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bridge-soak-")))
        folder.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(soak(args.minutes, args.kill_every, args.seed, folder))
        print("\n".join(report.lines()))
        if not report.ok:
            print(f"FAILED: something was lost, left pending or raised; log: "
                  f"{folder / 'bridge.log'}", file=sys.stderr)
            for sink, ids in report.lost.items():
                if ids:
                    print(f"   lost at {sink}: {', '.join(ids[:10])}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
