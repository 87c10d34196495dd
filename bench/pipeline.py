"""Pipeline benchmark: one poll of 100,000 tracked jobs end to end, 1% of them changed.

The real path of a list poll: `Pipeline.poll` over a source that answers with a ready
`PollResult` (so no HTTP is measured), every stage (detect, repeat, route, render, enqueue)
and the commit to SQLite in a tmp dir. Each pass moves a different 1% of the jobs across a
progress step, so each pass has 1,000 progress events, each rendered for a webhook sink and
queued; a `repeat` rule makes the repeat stage scan every tracked job, as it does in a real
config with reminders.

Figures are medians of the passes, in CPU time of this process (SQLite's thread included),
so other processes on a busy machine do not count: the whole poll, and the same polls
through the stages alone, without a store (`bridge.stages.replay`, as `bridge replay`
would run them): the stages' own cost (the store's is measured by `bench.delivery`).
Run: `.venv/bin/python -m bench.pipeline`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import parse_config
from bridge.config.schema import SourceBase
from bridge.metrics import Metrics
from bridge.model import JobState, JobStatus, PollResult
from bridge.pipeline import Pipeline
from bridge.render import Renderer, compile_when
from bridge.resources import bundled_templates
from bridge.rules import RuleBook
from bridge.store.sqlite import SqliteStore

JOBS = 100_000
CHANGED = 0.01
PASSES = 7
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TEMPLATES = bundled_templates()


def _config(path: Path) -> Any:
    text = f"""
[bridge]
state = "sqlite:///{path}"
templates = {json.dumps(str(TEMPLATES))}

[[sources]]
name = "bench"
kind = "zendesk"
base_url = "https://acme.zendesk.invalid"

[[sinks]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.invalid/bridge"

[[rules]]
name = "failed"
on = "transition"
to = ["failed"]
template = "transition.slack.j2"
notify = ["hook"]
repeat = "1h"

[[rules]]
name = "progress"
on = "progress"
template = "progress.slack.j2"
notify = ["hook"]
"""
    return parse_config(text, str(path.parent / "bench.toml"), env={})


class _ReadySource:
    """A source whose next answer is set by the benchmark: no HTTP in the figure."""

    lists_jobs = True

    def __init__(self, config: SourceBase):
        self.config = config
        self.answer = PollResult(observations=(), complete=True)

    @property
    def name(self) -> str:
        return self.config.name

    async def poll(self, ids: Sequence[str]) -> PollResult:
        return self.answer

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        raise NotImplementedError


def _observations(changed: int | None) -> PollResult:
    step = int(1 / CHANGED)
    items = [
        {"id": f"{n:032x}", "status": "working", "total": 100,
         "progress": 40 if changed is not None and n % step == changed else 10,
         "url": f"https://acme.zendesk.com/api/v2/job_statuses/{n:032x}.json"}
        for n in range(JOBS)
    ]
    parsed: list[dict[str, Any]] = json.loads(json.dumps(items))
    return PollResult(observations=[
        JobStatus(id=i["id"], state=JobState.RUNNING, raw_state=i["status"],
                  progress=float(i["progress"]), url=i["url"], fields=i) for i in parsed
    ], complete=True)


async def _poll(folder: Path) -> tuple[float, int]:
    config = _config(folder / "state.db")
    store = SqliteStore(str(folder / "state.db"))
    await store.open()
    now = [START]
    source = _ReadySource(config.sources[0])
    pipeline = Pipeline(config=config, store=store, sources={"bench": source},
                        rulebook=RuleBook(config.rules, compile_when),
                        renderer=Renderer(config), metrics=Metrics(), clock=lambda: now[0])
    try:
        await pipeline.load()
        source.answer = _observations(None)
        await pipeline.poll("bench")
        polls, notified = [], 0
        for i in range(PASSES):
            source.answer = _observations(i)
            now[0] = START + timedelta(seconds=30 * (i + 1))
            gc.collect()
            started = time.process_time()
            outcome = await pipeline.poll("bench")
            polls.append((time.process_time() - started) * 1000)
            notified = len(outcome.notifications)
        return statistics.median(polls), notified
    finally:
        await store.close()


async def _stages(folder: Path) -> float | None:
    try:
        from bridge.stages import stages_for
        from bridge.stages.memory import Memory
        from bridge.stages.replay import Recorded, replay
    except ImportError:  # a tree from before the stages: the whole poll is the figure
        return None
    config = _config(folder / "unused.db")
    stages = stages_for(config, strict=True)
    memory = Memory(["bench"])
    await replay(stages, [Recorded(source="bench", at=START, poll=_observations(None))], memory)
    timings = []
    for i in range(PASSES):
        recorded = Recorded(source="bench", at=START + timedelta(seconds=30 * (i + 1)),
                            poll=_observations(i))
        gc.collect()
        started = time.process_time()
        await replay(stages, [recorded], memory)
        timings.append((time.process_time() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        poll_ms, notified = asyncio.run(_poll(Path(tmp)))
        stage_ms = asyncio.run(_stages(Path(tmp)))
    stages = f"; {stage_ms:.0f} ms of it in the stages" if stage_ms is not None else ""
    print(f"   pipeline: {poll_ms:.0f} ms CPU per poll of {JOBS:,} tracked jobs, {CHANGED:.0%} "
          f"changed, SQLite commit included{stages} (median of {PASSES}; {notified} "
          "notifications per poll)")


if __name__ == "__main__":
    main()
