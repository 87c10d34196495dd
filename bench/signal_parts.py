"""The signal-quality benchmark's world: a plan of jobs, the four simulators that play it,
and what the fake Slack's record says about it. `bench/signal.py` runs and prints it.

Each planned job appears in one of the four simulated APIs, starts running, and ends
succeeded, failed, cancelled or vanished at planned times; `Player` makes those changes in
the simulators at those times (wall clock) and remembers when it made each one. The
figures come from `FakeSlack.calls` (what Slack received, when) alone.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from bridge.simulators.esales import EsalesSimulator
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.slack import FakeCall, FakeSlack
from bridge.simulators.terminal import TerminalSimulator
from bridge.simulators.zendesk import ZendeskSimulator

SOURCES = ("jtl", "terminal", "esales", "zendesk")
# What the bundled templates write for each final state: the message shows it.
SHOWN = {"succeeded": "*succeeded*", "failed": "*failed*", "cancelled": "*cancelled*",
         "vanished": "disappeared"}
DIGEST = "📋"  # how the bundled digest template starts
ROLLUP = "⏳"  # how the Slack sink's roll-up starts (bridge.sinks.slack_rollup)
ALERTS = ("failed", "cancelled")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedJob:
    source: str
    id: str
    appear: float  # seconds after the start
    run: float
    end: float
    outcome: str  # succeeded | failed | cancelled | vanished


def plan(jobs: int, seconds: float, seed: int = 11) -> list[PlannedJob]:
    """`jobs` jobs appearing over the first 80% of `seconds`, each ending by `seconds`:
    about 60% succeed, 25% fail, 10% are cancelled, 5% vanish."""
    rng = random.Random(seed)
    planned = []
    for n in range(jobs):
        source = SOURCES[n % len(SOURCES)]
        appear = rng.uniform(0, seconds * 0.8)
        end = min(appear + rng.uniform(3, 20), seconds)
        roll = rng.random()
        outcome = ("succeeded" if roll < 0.60 else "failed" if roll < 0.85
                   else "cancelled" if roll < 0.95 else "vanished")
        if source == "terminal" and outcome == "cancelled":
            outcome = "failed"  # Terminal's syncs cannot be cancelled
        planned.append(PlannedJob(source=source, id=_job_id(source, rng), appear=appear,
                                  run=appear + min(1.5, (end - appear) / 3), end=end,
                                  outcome=outcome))
    return sorted(planned, key=lambda j: j.appear)


def _job_id(source: str, rng: random.Random) -> str:
    if source == "jtl":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if source == "terminal":
        return "sync_" + "".join(rng.choice(_CROCKFORD) for _ in range(26))
    if source == "esales":
        return str(rng.randrange(10**18, 10**19))
    return f"{rng.getrandbits(128):032x}"


@dataclass(slots=True)
class World:
    jtl: JtlSimulator = field(default_factory=lambda: JtlSimulator(
        token_ttl=3600, client_id="bench", client_secret="bench-secret"))
    terminal: TerminalSimulator = field(default_factory=lambda: TerminalSimulator(
        api_key="bench-terminal", connection_token="con_tkn_bench"))
    esales: EsalesSimulator = field(default_factory=lambda: EsalesSimulator(
        api_key="bench-esales"))
    zendesk: ZendeskSimulator = field(default_factory=lambda: ZendeskSimulator(
        email="bench@example.com", api_token="bench-zendesk"))

    async def start(self) -> None:
        for simulator in (self.jtl, self.terminal, self.esales, self.zendesk):
            await simulator.start()

    async def stop(self) -> None:
        for simulator in (self.jtl, self.terminal, self.esales, self.zendesk):
            await simulator.stop()

    def config(self, slack: FakeSlack, state: str, *, grouped: bool = False) -> str:
        """rules.toml for this world: four sources polled every second, one Slack channel
        in update mode, rules on start, success, failure, stall and vanish; `grouped`: the
        start and success rules send one digest per source instead."""
        group = 'group_by = ["source"]\ngroup_wait = "10s"\ngroup_interval = "10s"'
        noise = group if grouped else ""
        def source(name: str, body: str) -> str:
            return f'[[sources]]\nname = "{name}"\nkind = "{name}"\ninterval = "1s"\n{body}\n'

        return "".join([
            f'[bridge]\nstate = "{state}"\n\n',
            source("jtl", f'base_url = "{self.jtl.base_url}"\ntenant_id = "{self.jtl.tenant_id}"\n'
                   f'[sources.auth]\ntype = "oauth2"\ntoken_url = "{self.jtl.token_url}"\n'
                   f'client_id = "bench"\nclient_secret = "bench-secret"'),
            source("terminal", f'base_url = "{self.terminal.base_url}"\n'
                   'connection_token = "con_tkn_bench"\n'
                   '[sources.auth]\ntype = "bearer"\ntoken = "bench-terminal"'),
            source("esales", f'base_url = "{self.esales.base_url}"\napi_key = "bench-esales"\n'
                   'vanish_after = "1s"'),
            source("zendesk", f'base_url = "{self.zendesk.base_url}"\n'
                   '[sources.auth]\ntype = "basic"\nusername = "bench@example.com/token"\n'
                   'password = "bench-zendesk"'),
            f'[[sinks]]\nname = "ops"\nkind = "slack"\ntoken = "{slack.token}"\n'
            f'channel = "#ops"\nmode = "update"\nbase_url = "{slack.api_url}"\n\n',
            _rule("job-started", "appeared", noise),
            _rule("job-succeeded", "transition", 'to = ["succeeded"]\n' + noise),
            _rule("job-failed", "transition", 'to = ["failed", "cancelled"]'),
            _rule("job-stalled", "stalled"),
            _rule("job-vanished", "vanished"),
        ])


def _rule(name: str, on: str, extra: str = "") -> str:
    template = "transition" if on == "transition" else on
    return (f'[[rules]]\nname = "{name}"\non = "{on}"\n{extra}\n'
            f'template = "{template}.slack.j2"\nnotify = ["ops"]\n\n')


class Player:
    """Makes the planned changes in the simulators at their times; `changed[(id, what)]` is
    when (time.monotonic) each was made."""

    def __init__(self, world: World, jobs: list[PlannedJob], watch: object):
        self._world = world
        self._jobs = jobs
        self._watch = watch
        self.changed: dict[tuple[str, str], float] = {}

    async def play(self, started: float) -> None:
        steps = sorted([(j.appear, "appear", j) for j in self._jobs]
                       + [(j.run, "run", j) for j in self._jobs]
                       + [(j.end, "end", j) for j in self._jobs], key=lambda s: s[0])
        for at, what, job in steps:
            delay = started + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._apply(what, job)
            self.changed[(job.id, what)] = time.monotonic()

    async def _apply(self, what: str, job: PlannedJob) -> None:
        if job.source == "esales":
            await self._esales(what, job)
        else:
            {"zendesk": self._zendesk, "terminal": self._terminal,
             "jtl": self._jtl}[job.source](what, job)

    def _zendesk(self, what: str, job: PlannedJob) -> None:
        sim = self._world.zendesk
        if what == "appear":
            sim.add_job(job.id, status="queued", total=100, progress=0)
        elif what == "run":
            sim.set_job(job.id, status="working", progress=10)
        elif job.outcome == "vanished":
            sim.expire(job.id)
        else:
            status = {"succeeded": "completed", "failed": "failed",
                      "cancelled": "killed"}[job.outcome]
            sim.set_job(job.id, status=status, progress=100,
                        message="Printer on fire" if job.outcome == "failed" else None)

    def _terminal(self, what: str, job: PlannedJob) -> None:
        sim = self._world.terminal
        if what == "appear":
            sim.add_sync(job.id, status="requested")
        elif what == "run":
            sim.set_sync(job.id, status="in_progress", progress=10)
        elif job.outcome == "vanished":
            sim.delete_sync(job.id)
        elif job.outcome == "succeeded":
            sim.set_sync(job.id, status="completed", progress=100)
        else:
            sim.set_sync(job.id, status="failed", failureReason="token revoked")

    def _jtl(self, what: str, job: PlannedJob) -> None:
        sim = self._world.jtl
        if what == "appear":
            # Messages show a JTL sync by its name (the simulator calls every one "Amazon
            # DE: Orders"): a name with the id lets the record tell the syncs apart.
            sim.add_sync(job.id, state=1, sync_name=f"Orders {job.id}")
        elif what == "run":
            sim.set_sync(job.id, State=2, Progress=10)
        elif job.outcome == "vanished":
            sim.remove_sync(job.id)
        else:
            sim.set_sync(job.id, State={"succeeded": 3, "failed": 4,
                                        "cancelled": 7}[job.outcome])

    async def _esales(self, what: str, job: PlannedJob) -> None:
        w = self._world
        if what == "appear":
            w.esales.add_import(job.id, status="WAITING")
            await self._watch("esales", job.id)  # type: ignore[operator]
        elif what == "run":
            w.esales.set_import(job.id, status="IN_PROGRESS")
        elif job.outcome == "vanished":
            w.esales.remove_import(job.id)
        else:
            status = {"succeeded": "SUCCESS", "failed": "FAILURE",
                      "cancelled": "ABORTED"}[job.outcome]
            w.esales.set_import(job.id, status=status, reason="feed rejected")


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    alert_latency: list[float]  # API change -> first Slack call naming the failed job
    alerts_missing: int
    final_correct: int
    final_after_end: list[float]  # since when each job's final state is shown, to the end
    jobs: int
    roots: Counter[int]  # roots per job -> how many jobs
    false_alerts: int
    accounted: int  # jobs named in any message (their own, a digest, the roll-up)
    rolled_up: int  # failure alerts first shown by the roll-up
    rate_limited: int
    by_method: Counter[str]


@dataclass(slots=True)
class _Job:
    """What the record showed of one planned job so far."""

    planned: PlannedJob
    named: bool = False
    first_alert: float | None = None
    first_by_rollup: bool = False
    roots: int = 0
    false_alert: bool = False
    final_since: float | None = None  # shown in its final state from then on


def figures(jobs: list[PlannedJob], changed: dict[tuple[str, str], float],
            calls: list[FakeCall], burst_end: float) -> Figures:
    """Replay the fake Slack's record message by message: each successful post or edit is
    the new version of one message (channel, ts); a job's final state is shown while the
    current version of its own message, a thread reply, or a digest has a line naming the
    job with that state (the roll-up only counts for the first alert)."""
    seen = {job.id: _Job(planned=job) for job in jobs}
    current: dict[tuple[str, str], str] = {}
    kinds: dict[tuple[str, str], str] = {}
    naming: dict[str, set[tuple[str, str]]] = {job.id: set() for job in jobs}
    for call in calls:
        if call.status != 200 or call.error is not None or call.ts is None:
            continue
        key = (str(call.channel), call.ts)
        text = str(call.body.get("text", ""))
        kinds[key] = _kind(call, text)
        before, current[key] = current.get(key, ""), text
        for job_id in [i for i in seen if i in text or i in before]:
            naming[job_id].discard(key)
            if job_id in text:
                naming[job_id].add(key)
            _saw(seen[job_id], call, text, kinds[key], changed)
            shown = any(_shows_final(seen[job_id].planned, current[k])
                        for k in naming[job_id] if kinds[k] != "rollup")
            job = seen[job_id]
            job.final_since = (job.final_since or call.at) if shown else None
    alerts = [j for j in seen.values() if j.planned.outcome in ALERTS]
    latency = [j.first_alert for j in alerts if j.first_alert is not None]
    final = [j for j in seen.values() if j.final_since is not None]
    return Figures(alert_latency=latency, alerts_missing=len(alerts) - len(latency),
                   final_correct=len(final),
                   final_after_end=[j.final_since - burst_end for j in final
                                    if j.final_since is not None],
                   jobs=len(jobs), roots=Counter(j.roots for j in seen.values()),
                   false_alerts=sum(j.false_alert for j in seen.values()),
                   accounted=sum(j.named for j in seen.values()),
                   rolled_up=sum(j.first_by_rollup for j in alerts),
                   rate_limited=sum(1 for c in calls if c.status == 429),
                   by_method=Counter(c.method for c in calls))


def _kind(call: FakeCall, text: str) -> str:
    if "thread_ts" in call.body:
        return "reply"
    if text.startswith(DIGEST):
        return "digest"
    return "rollup" if text.startswith(ROLLUP) else "own"


def _saw(job: _Job, call: FakeCall, text: str, kind: str,
         changed: dict[tuple[str, str], float]) -> None:
    """One call whose text names the job (or named it before this edit)."""
    planned = job.planned
    if planned.id not in text:
        return
    job.named = True
    if kind == "own" and call.method == "chat.postMessage":
        job.roots += 1
    if planned.outcome in ALERTS:
        at = changed.get((planned.id, "end"))
        if job.first_alert is None and at is not None and call.at >= at:
            job.first_alert = call.at - at
            job.first_by_rollup = kind == "rollup"
    elif any(f"*{word}*" in _line(text, planned.id) for word in ALERTS):
        job.false_alert = True


def _shows_final(job: PlannedJob, text: str) -> bool:
    line = _line(text, job.id)
    return any(word in line for word in (SHOWN[job.outcome], f"*{job.outcome}*"))


def _line(text: str, job_id: str) -> str:
    """The lines of a message that name the job (a digest names many jobs)."""
    return "\n".join(line for line in text.splitlines() if job_id in line)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
