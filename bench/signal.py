"""Signal-quality benchmark: do failure alerts reach Slack fast under a burst, within Slack's
limits, and does every job's message end up showing its final state?

N jobs over T seconds (default 60 over 90 s) appear, run and end in the four simulated APIs
(JTL, Terminal, Voyado eSales, Zendesk; `bench/signal_parts.py`), polled every second by a
real `Bridge` with rules on start, success, failure, stall and vanish, into ONE channel of
the fake Slack in `update` mode, with Slack's limits on (429 + Retry-After). Printed, from
the fake Slack's own record of calls:

- failure-alert latency p50/p99: the change in the API -> the first Slack call naming the
  job after it (target: p99 <= 5 s);
- final state: how many jobs' messages show their last state, and when the last of them
  came to, relative to the burst's end (target: all, within 30 s), replaying the record
  message by message (each post or edit is that message's new version);
- accounted for / lost: jobs named in any message (their own, a digest, the channel's
  roll-up), and those never named;
- roots per job (target: <= 1), false alerts (target: 0), 429s, calls by method.

Not a test: nothing fails, it prints. `--quick` runs 20 jobs over 20 s.
`--grouped` (issue 11's second scenario, with `--jobs 300`): the start and success rules
send one digest per source (`group_by = ["source"]`, 10 s wait and interval); failures
keep their own messages. Its targets: failure p99 <= 10 s, every job's final state shown
(by its own message or a digest, which names every job) within 60 s of the end, 0 lost.
Run: `.venv/bin/python -m bench.signal [--quick] [--jobs N --seconds T] [--grouped]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bench.signal_parts import Figures, Player, World, figures, percentile, plan
from bridge.app import Bridge
from bridge.config.loader import parse_config
from bridge.simulators.slack import FakeSlack

# After the burst, how long to wait for the messages to settle before reading the record.
SETTLE = 60.0


async def scenario(*, jobs: int, seconds: float, grouped: bool = False) -> Figures:
    planned = plan(jobs, seconds)
    world = World()
    await world.start()
    try:
        async with FakeSlack(channels={"#ops": "C0OPS"}) as slack:
            with tempfile.TemporaryDirectory(prefix="bench-signal-") as tmp:
                text = world.config(slack, f"sqlite:///{tmp}/state.db", grouped=grouped)
                config = parse_config(text, str(Path(tmp) / "rules.toml"), {})
                async with Bridge(config, serve_http=False, drain_timeout=2.0) as bridge:
                    player = Player(world, planned, bridge.watch)
                    started = time.monotonic()
                    await player.play(started)
                    burst_end = max(player.changed.values())
                    # A digest is edited at most every group_interval (10 s).
                    await _settle(slack, burst_end, quiet=12.0 if grouped else 5.0)
                return figures(planned, player.changed, slack.calls, burst_end)
    finally:
        await world.stop()


async def _settle(slack: FakeSlack, burst_end: float, *, quiet: float) -> None:
    """Wait until the record stops growing for `quiet` seconds (or SETTLE runs out)."""
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < burst_end + SETTLE:
        await asyncio.sleep(0.5)
        if len(slack.calls) != seen:
            seen, quiet_since = len(slack.calls), time.monotonic()
        elif time.monotonic() - quiet_since > quiet:
            return


def report(f: Figures, jobs: int, seconds: float, grouped: bool = False) -> None:
    p50, p99 = percentile(f.alert_latency, 50), percentile(f.alert_latency, 99)
    last = max(f.final_after_end, default=float("nan"))
    print(f"   {jobs} jobs over {seconds:g} s, four sources, one Slack channel (update mode, "
          f"Slack's limits on{'; starts and successes grouped per source' if grouped else ''})")
    alert_target = 10 if grouped else 5
    print(f"   failure alerts:  {len(f.alert_latency)} sent, {f.alerts_missing} missing; "
          f"latency p50 {p50:.2f} s, p99 {p99:.2f} s  "
          f"[target p99 <= {alert_target} s: {'ok' if p99 <= alert_target else 'MISSED'}]; "
          f"{f.rolled_up} first shown by the roll-up")
    lost = f.jobs - f.accounted
    print(f"   accounted for:   {f.accounted}/{f.jobs} jobs named in a message (their own, "
          f"a digest or the roll-up); lost: {lost}  [target 0: {'ok' if lost == 0 else 'MISSED'}]")
    within = 60 if grouped else 30
    settled = f.final_correct == f.jobs and last <= within
    print(f"   final state:     {f.final_correct}/{f.jobs} shown by the job's own message"
          f"{' or a digest' if grouped else ''}, the last from {last:+.1f} s after the "
          f"burst's end  [target all within {within} s: {'ok' if settled else 'MISSED'}]")
    roots = ", ".join(f"{n} root{'s' if n != 1 else ''}: {count} jobs"
                      for n, count in sorted(f.roots.items()))
    print(f"   roots per job:   {roots}  "
          f"[target <= 1: {'ok' if max(f.roots, default=0) <= 1 else 'MISSED'}]")
    print(f"   false alerts:    {f.false_alerts}  [target 0: "
          f"{'ok' if f.false_alerts == 0 else 'MISSED'}]")
    methods = ", ".join(f"{m} {n}" for m, n in sorted(f.by_method.items()))
    print(f"   Slack calls:     {methods}; 429s received: {f.rate_limited}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.signal")
    parser.add_argument("--quick", action="store_true", help="20 jobs over 20 s")
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--grouped", action="store_true",
                        help="starts and successes as digests per source")
    args = parser.parse_args(argv if argv is not None else [])
    jobs, seconds = (20, 20.0) if args.quick else (args.jobs, args.seconds)
    # The sender's 429 warnings and the sources' info lines would bury the figures.
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(scenario(jobs=jobs, seconds=seconds, grouped=args.grouped))
    report(figures, jobs, seconds, args.grouped)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
