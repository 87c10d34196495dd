"""Grouping benchmark: one poll in which 300 jobs finish, grouped and not, in one run.

The same 300 transition events go through the real stages (route, group, render, enqueue)
into SQLite in a tmp dir, once for a rule without `group_by` (the peer) and once for the
same rule with `group_by = ["source"]`, whose group the real flusher then flushes. Printed:
the outbox rows each queued, the Slack messages those rows make in `update` mode (a message
in the channel per row, plus each digest's thread replies), and the CPU time of the poll's
stages and commit (with the flush, for the grouped one), as a ratio to the peer.
Run: `.venv/bin/python -m bench.groups`.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import parse_config
from bridge.groups.digest import Digests
from bridge.groups.flusher import Flusher
from bridge.metrics import Metrics
from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.render import Renderer, compile_when
from bridge.resources import bundled_templates
from bridge.rules import RuleBook
from bridge.stages import Batch, Context, build_stages
from bridge.store.sqlite import SqliteStore

JOBS = 300
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _config(grouped: bool, state: JobState) -> Any:
    group = 'group_by = ["source"]\ngroup_wait = "10s"\n' if grouped else ""
    text = f"""
[bridge]
templates = {json.dumps(str(bundled_templates()))}

[[sinks]]
name = "ops-slack"
kind = "slack"
token = "xoxb-bench"
channel = "#ops"
mode = "update"

[[rules]]
name = "finished"
on = "transition"
to = ["{state}"]
template = "transition.slack.j2"
notify = ["ops-slack"]
{group}"""
    return parse_config(text, "bench.toml", env={})


def _events(state: JobState) -> tuple[Event, ...]:
    return tuple(Event(
        id=f"evt_{i}", on=EventKind.TRANSITION, source="zendesk", at=START,
        job=JobStatus(id=f"job-{i:04d}", state=state, raw_state=str(state),
                      message="Printer on fire" if state is JobState.FAILED else None,
                      url=f"https://acme.zendesk.invalid/jobs/{i}"),
        from_state=JobState.RUNNING, to_state=state, duration=timedelta(seconds=90 + i))
        for i in range(JOBS))


async def _run(folder: Path, grouped: bool, state: JobState) -> tuple[int, int, float]:
    config = _config(grouped, state)
    store = SqliteStore(str(folder / f"{grouped}-{state}.db"))
    await store.open()
    try:
        renderer = Renderer(config)
        stages = build_stages(config, RuleBook(config.rules, compile_when), renderer, store)
        started = time.process_time()
        await stages.run(Context(source="zendesk", now=START), Batch(events=_events(state)))
        if grouped:
            flusher = Flusher(store=store, digests=Digests(config, renderer), metrics=Metrics(),
                              clock=lambda: START + timedelta(seconds=10))
            await flusher.flush_due()
        cpu = time.process_time() - started
        rows = await store.list_outbox(limit=10_000)
    finally:
        await store.close()
    replies = sum(len(r.notification.payload.get("replies") or ()) for r in rows)
    return len(rows), len(rows) + replies, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for state in (JobState.SUCCEEDED, JobState.FAILED):
            rows, calls, cpu = asyncio.run(_run(Path(tmp), False, state))
            g_rows, g_calls, g_cpu = asyncio.run(_run(Path(tmp), True, state))
            print(f"   {JOBS} jobs {state} in one poll: per event {rows} outbox rows = {calls} "
                  f"channel messages, {cpu * 1000:.0f} ms CPU; grouped {g_rows} row = "
                  f"{g_rows} channel message + {g_calls - g_rows} thread replies, "
                  f"{g_cpu * 1000:.0f} ms CPU with the flush ({g_cpu / cpu:.2f}x)")


if __name__ == "__main__":
    main()
