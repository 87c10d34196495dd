"""`bridge record` and `bridge replay`: see bridge.record.

    bridge record --source jtl --duration 10m --out poll.jsonl [--id JOB_ID ...]
    bridge replay poll.jsonl [--config rules.toml]
    bridge replay --demo          # the recording the demo ships, with the demo's config
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bridge.app import utc_now
from bridge.config.schema import Config, parse_duration
from bridge.errors import ConfigError
from bridge.record import RecordingSource, read_recording, replay_recording, report
from bridge.sources import build_source

# Package data (bridge/recordings), made by bridge.demo_recording.
DEMO_RECORDING = "recordings/demo-jtl.jsonl"


def add_parsers(sub: Any, config_arg: Any) -> None:
    record = sub.add_parser("record", help="poll one source and store its raw API answers")
    config_arg(record)
    record.add_argument("--source", required=True, help="a source of the config")
    record.add_argument("--duration", default="10m", help='how long, e.g. "10m" (default)')
    record.add_argument("--out", required=True, help="the JSON-lines file to write")
    record.add_argument("--id", action="append", default=[], dest="ids", metavar="JOB_ID",
                        help="a job id to poll too (for sources polled by id)")
    replay = sub.add_parser("replay", help="what a config would have sent for a recording")
    config_arg(replay)
    replay.add_argument("recording", nargs="?", help="a file `bridge record` wrote")
    replay.add_argument("--demo", action="store_true",
                        help="the demo's shipped recording with the demo's config")


async def record(config: Config, source_name: str, duration: timedelta, out: TextIO, *,
                 ids: list[str], clock: Callable[[], Any] = utc_now,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 log: TextIO = sys.stderr) -> int:
    """Poll the source at its interval for `duration`; returns the number of polls."""
    configured = {s.name: s for s in config.sources}
    if source_name not in configured:
        raise ConfigError(f"no source {source_name!r} in the config "
                          f"(sources: {', '.join(configured) or 'none'})")
    interval = configured[source_name].interval.total_seconds()
    polls, deadline = 0, monotonic() + duration.total_seconds()
    unfinished: set[str] = set()
    async with aiohttp.ClientSession() as session:
        source = RecordingSource(build_source(configured[source_name], session), out, clock)
        while True:
            wanted = [*ids, *sorted(unfinished - set(ids))]
            try:
                result = await source.poll(wanted)
                unfinished = {j.id for j in result.observations if not j.state.terminal}
                log.write(f"poll {polls + 1}: {len(result.observations)} jobs\n")
            except Exception as exc:  # recorded as it failed; the next poll goes on
                log.write(f"poll {polls + 1}: failed: {exc}\n")
            polls += 1
            if monotonic() + interval >= deadline:
                return polls
            await sleep(interval)


def cmd_record(args: argparse.Namespace, config: Config) -> int:
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"bridge record: --duration: {exc}", file=sys.stderr)
        return 1
    with Path(args.out).open("w") as out:
        polls = asyncio.run(record(config, args.source, duration, out, ids=args.ids))
    print(f"recorded {polls} poll(s) of {args.source} to {args.out}")
    return 0


def cmd_replay(args: argparse.Namespace, load: Callable[[Any], Config]) -> int:
    if args.demo:
        from bridge.config import load_config
        from bridge.resources import demo_config

        with demo_config() as path:
            config = load_config(path, env={})
        with as_file(files("bridge").joinpath(DEMO_RECORDING)) as shipped:
            recording_path = Path(shipped)
            recording = read_recording(recording_path)
    elif args.recording:
        config, recording_path = load(args.config), Path(args.recording)
        recording = read_recording(recording_path)
    else:
        print("bridge replay: give a recording (or --demo)", file=sys.stderr)
        return 1
    batches = asyncio.run(replay_recording(config, recording))
    sent = [n for b in batches for n in (*b.notifications, *b.silenced_notifications)]
    first, last = recording.polls[0].at if recording.polls else None, (
        recording.polls[-1].at if recording.polls else None)
    print(f"replay of {recording_path.name}: source {recording.source}, "
          f"{len(recording.polls)} polls, {first} .. {last}; nothing was sent")
    for line in report(sent):
        print(line)
    return 0
