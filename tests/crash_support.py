"""Helpers for the "nothing lost" tests: a `bridge run` child process, a config writer, a
driver that moves Zendesk jobs through their lifecycles while remembering the truth, and the
checks that compare what the bridge stored and delivered with that truth.

The simulators and the webhook receiver run in the test's own event loop; only the bridge
runs in a separate process, so `kill -9` hits nothing but the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bridge.model import Delivery, DeliveryStatus, Event, EventKind, Notification
from bridge.simulators.webhook_receiver import ReceivedRequest, Reply, WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.store import open_store
from bridge.store.base import Store
from tests.config_support import TEMPLATES as TEMPLATES
from tests.config_support import basic_zendesk_source, rule, sink
from tests.config_support import write_config as write_config

EMAIL = "ops@example.com"
TOKEN = "zd-api-token-for-crash-tests"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SINK = "pager"
RULE = "any-transition"
REPO = Path(__file__).resolve().parent.parent

# Zendesk raw status -> canonical state (contract section 3).
CANONICAL = {"queued": "pending", "working": "running", "completed": "succeeded",
             "failed": "failed", "killed": "cancelled"}
# Ticks of the job driver at which two more jobs appear: changes keep coming for ~3.5 s,
# across the kill and the restart.
NEW_JOBS_AT = frozenset(range(4, 30, 4))
LIFECYCLES = (
    ("queued", "working", "completed"),
    ("queued", "working", "failed"),
    ("queued", "working", "killed"),
    ("queued", "completed"),
    ("working", "failed"),
)


def webhook_sink(url: str, *, name: str = SINK, schedule: str = "200ms", attempts: int = 100,
                 secret: str | None = SECRET) -> str:
    return sink(name, "webhook", url=url, secret=secret, timeout="2s",
                retry={"schedule": [schedule], "attempts": attempts})


def zendesk_source(zendesk: ZendeskSimulator, *, interval: str = "200ms") -> str:
    return basic_zendesk_source(zendesk.base_url, email=EMAIL, token=TOKEN, interval=interval,
                                timeout="2s")


def transition_rule(*sinks: str) -> str:
    return rule(RULE, notify=sinks)


def state_url(config: Path) -> str:
    return f"sqlite:///{config.parent}/state.db"


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float, what: str,
                     every: float = 0.05) -> None:
    """Wait until `check()` holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


class BridgeProcess:
    """`python -m bridge run --config PATH` as a child process; its log collected by line."""

    def __init__(self, config: Path, *, drain_timeout: float = 2.0, log_level: str = "info",
                 env: dict[str, str] | None = None):
        self.config = config
        self.env = env or {}
        self.drain_timeout = drain_timeout
        self.log_level = log_level
        self.lines: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    async def start(self) -> BridgeProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "--log-level", self.log_level,
            "run", "--config", str(self.config), "--drain-timeout", str(self.drain_timeout),
            cwd=str(REPO), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        return self

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    async def wait_for_log(self, text: str, within: float = 15.0) -> None:
        """Wait for a log line containing `text` (e.g. "bridge running")."""
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(
                    lambda: any(text in line for line in self.lines) or self.returncode is not None
                )
        except TimeoutError:
            raise AssertionError(f"no log line {text!r} within {within}s:\n{self.log()}") from None
        if not any(text in line for line in self.lines):
            raise AssertionError(f"bridge exited before logging {text!r}:\n{self.log()}")

    def log(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])

    def kill(self) -> None:
        """`kill -9`: no drain, no cleanup, nothing flushed beyond what was committed."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send(signal.SIGTERM)

    def send(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    async def wait(self, within: float = 20.0) -> int:
        assert self._proc is not None
        try:
            async with asyncio.timeout(within):
                code = await self._proc.wait()
                if self._reader is not None:
                    await self._reader
        except TimeoutError:
            raise AssertionError(f"bridge did not exit within {within}s:\n{self.log()}") from None
        return code

    async def aclose(self) -> None:
        """Make sure the child is gone (after a failed test too)."""
        if self._proc is None:
            return
        self.kill()
        with contextlib.suppress(ProcessLookupError):
            await self._proc.wait()
        if self._reader is not None:
            await self._reader


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# --- the truth, and the checks against it ------------------------------------------------


@dataclass(slots=True)
class JobDriver:
    """Moves Zendesk jobs through scripted lifecycles and remembers every status they had."""

    zendesk: ZendeskSimulator
    rng: random.Random
    plans: dict[str, list[str]] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, count: int) -> None:
        for _ in range(count):
            job_id = f"job-{len(self.plans) + 1:02d}"
            lifecycle = list(self.rng.choice(LIFECYCLES))
            self.plans[job_id] = lifecycle[1:]
            self.zendesk.add_job(job_id, status=lifecycle[0])
            self.history[job_id].append(lifecycle[0])

    @property
    def done(self) -> bool:
        return not any(self.plans.values())

    def step(self) -> None:
        """Advance one random unfinished job by one status."""
        moving = [job_id for job_id, rest in self.plans.items() if rest]
        if not moving:
            return
        job_id = self.rng.choice(moving)
        status = self.plans[job_id].pop(0)
        self.zendesk.set_job(job_id, status=status)
        self.history[job_id].append(status)

    async def run(self, *, every: float, new_jobs_at: frozenset[int] = frozenset()) -> None:
        tick = 0
        last_new = max(new_jobs_at, default=0)
        while not self.done or tick < last_new:
            await asyncio.sleep(every)
            tick += 1
            if tick in new_jobs_at:
                self.add(2)
            self.step()

    def final_states(self) -> dict[str, str]:
        return {job_id: CANONICAL[statuses[-1]] for job_id, statuses in self.history.items()}


async def all_events(store: Store) -> list[Event]:
    """Every stored event, oldest first."""
    return [event for _, event in reversed(await store.recent_events(limit=100_000))]


async def all_deliveries(store: Store) -> list[Delivery]:
    return await store.list_outbox(None, limit=100_000)


def delivery_id(event: Event, sink: str = SINK, rule: str = RULE) -> str:
    return Notification(event_id=event.id, rule=rule, sink=sink, source=event.source,
                        job_id=None, payload={}, on=event.on).delivery_id


def check_events_follow_the_truth(events: list[Event], history: dict[str, list[str]]) -> None:
    """Per job: one `appeared`, then transitions that chain (each `from` is the state the
    previous one went `to`, so none is emitted twice) through states the job really had, in
    order, ending where the job ended."""
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    by_job: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.job is not None:
            by_job[event.job.id].append(event)
    assert set(by_job) == set(history), f"jobs seen {sorted(by_job)} != {sorted(history)}"
    for job_id, job_events in by_job.items():
        truth = [CANONICAL[s] for s in history[job_id]]
        kinds = [e.on for e in job_events]
        assert kinds[0] is EventKind.APPEARED and kinds.count(EventKind.APPEARED) == 1, (
            f"{job_id}: {kinds}")
        assert set(kinds[1:]) <= {EventKind.TRANSITION}, f"{job_id}: {kinds}"
        assert job_events[0].job is not None
        seen = [str(job_events[0].job.state)]
        for event in job_events[1:]:
            assert str(event.from_state) == seen[-1], (
                f"{job_id}: transition {event.from_state}->{event.to_state} after {seen}")
            seen.append(str(event.to_state))
        assert _in_order(seen, truth), f"{job_id}: stored {seen}, real {truth}"
        assert seen[-1] == truth[-1], f"{job_id}: ended {seen[-1]}, really {truth[-1]}"


def _in_order(seen: list[str], truth: list[str]) -> bool:
    """`seen` is `truth` with some states skipped (polls can miss short-lived states)."""
    remaining = iter(truth)
    return all(state in remaining for state in seen)


def check_every_transition_delivered_once_per_id(
    events: list[Event], deliveries: list[Delivery], receiver: WebhookReceiver
) -> int:
    """Every transition reached the receiver; every attempt for one event carried one
    `webhook-id` (the stable one). Returns how many deliveries were repeats (at-least-once)."""
    transitions = {e.id: e for e in events if e.on is EventKind.TRANSITION}
    expected_ids = {delivery_id(e): e.id for e in transitions.values()}
    assert {d.id for d in deliveries} == set(expected_ids), "outbox rows != transitions"
    not_done = [(d.id, d.status, d.last_error) for d in deliveries
                if d.status is not DeliveryStatus.DELIVERED]
    assert not not_done, f"undelivered rows: {not_done}"
    ids_per_event: dict[str, set[str]] = defaultdict(set)
    delivered: list[str] = []
    for request in receiver.requests:
        event_id = json.loads(request.body)["data"]["event_id"]
        ids_per_event[event_id].add(request.webhook_id or "")
        if 200 <= request.status < 300:
            assert request.verified, "an unsigned or badly signed request was accepted"
            delivered.append(event_id)
    assert set(delivered) == set(transitions), (
        f"missing at the receiver: {sorted(set(transitions) - set(delivered))}; "
        f"unexpected: {sorted(set(delivered) - set(transitions))}")
    for event_id, webhook_ids in ids_per_event.items():
        assert webhook_ids == {delivery_id(transitions[event_id])}, (
            f"event {event_id} sent with webhook-ids {webhook_ids}")
    return len(delivered) - len(set(delivered))


def check_repeats_come_from_the_kill(
    requests: list[ReceivedRequest], cut: int
) -> tuple[int, int]:
    """At-least-once, and no more: `requests[:cut]` reached the receiver from the bridge
    that was killed, the rest from its successor. Each bridge delivers an event at most
    once; an event is delivered twice only when the killed bridge delivered it and died
    before recording that. Returns (deliveries before the kill, repeats)."""
    before = _accepted(requests[:cut])
    after = _accepted(requests[cut:])
    for name, part in (("the killed bridge", before), ("its successor", after)):
        doubled = {event_id: n for event_id, n in part.items() if n > 1}
        assert not doubled, f"{name} delivered events more than once: {doubled}"
    repeats = set(before) & set(after)
    return sum(before.values()), len(repeats)


def _accepted(requests: list[ReceivedRequest]) -> Counter[str]:
    return Counter(json.loads(r.body)["data"]["event_id"] for r in requests
                   if 200 <= r.status < 300)


# --- one crash iteration -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashReport:
    kill_at: float
    receiver_up_before_kill: bool
    transitions: int
    # 2xx answers the receiver gave the killed bridge; repeats can only come from these.
    delivered_before_kill: int
    repeats: int
    seconds: float


async def crash_iteration(directory: Path, seed: int) -> CrashReport:
    """Run a bridge against a down receiver, `kill -9` it at a random moment, restart it on
    the same state file, bring the receiver up and check that nothing was lost or doubled."""
    rng = random.Random(seed)
    started = time.monotonic()
    # Even seeds bring the receiver up before the kill, so the kill can land mid-delivery.
    up_before_kill = seed % 2 == 0
    kill_at = rng.uniform(0.2, 3.0)
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN, seed=seed) as zendesk:
        receiver = WebhookReceiver(secret=SECRET)
        await receiver.start()
        await receiver.stop()  # down, on a port it will come back to
        config = write_config(directory, zendesk_source(zendesk), webhook_sink(receiver.url),
                              transition_rule(SINK))
        driver = JobDriver(zendesk, rng)
        driver.add(4)
        first = await BridgeProcess(config).start()
        # The kill moment counts from a running bridge: on a loaded machine start-up alone
        # can outlast the jobs' lifecycles, and a bridge that never polled proves nothing.
        await first.wait_for_log("bridge running")
        started = time.monotonic()
        second = BridgeProcess(config)
        driving = asyncio.create_task(driver.run(every=0.12, new_jobs_at=NEW_JOBS_AT))
        try:
            if up_before_kill:
                # A slow receiver keeps deliveries in flight, so the kill can cut one short
                # after the receiver took it: it must come again with the same webhook-id.
                receiver.script([], then=Reply(status=200, delay=rng.uniform(0.1, 0.4)))
                await asyncio.sleep(rng.uniform(0.0, kill_at))
                await receiver.start()
            await asyncio.sleep(max(0.0, kill_at - (time.monotonic() - started)))
            first.kill()
            assert await first.wait() == -signal.SIGKILL
            # Let requests the killed bridge had sent finish arriving: every request from
            # here on comes from its successor.
            await asyncio.sleep(0.2)
            cut = len(receiver.requests)
            await second.start()
            await second.wait_for_log("bridge running")
            if not up_before_kill:
                await receiver.start()
            await driving
            await _wait_until_settled(config, driver, second)
            second.terminate()
            assert await second.wait() == 0, second.log()
        finally:
            driving.cancel()
            await first.aclose()
            await second.aclose()
            await receiver.close()
    async with opened(state_url(config)) as store:
        events = await all_events(store)
        deliveries = await all_deliveries(store)
    check_events_follow_the_truth(events, dict(driver.history))
    repeats = check_every_transition_delivered_once_per_id(events, deliveries, receiver)
    delivered_before, repeats_after_kill = check_repeats_come_from_the_kill(
        receiver.requests, cut)
    assert repeats == repeats_after_kill, (repeats, repeats_after_kill)
    if not up_before_kill:
        assert delivered_before == 0 and repeats == 0, (delivered_before, repeats)
    return CrashReport(kill_at=kill_at, receiver_up_before_kill=up_before_kill,
                       transitions=len(deliveries), delivered_before_kill=delivered_before,
                       repeats=repeats, seconds=time.monotonic() - started)


async def _wait_until_settled(config: Path, driver: JobDriver, bridge: BridgeProcess) -> None:
    """Until the store holds every job in its final state and no delivery is pending."""
    finals = driver.final_states()
    async with opened(state_url(config)) as store:

        async def settled() -> bool:
            jobs = {j.id: str(j.status.state) for j in await store.list_jobs("zendesk")}
            if jobs != finals:
                return False
            stats = await store.outbox_stats()
            assert stats.dead == 0, f"dead letters: {await store.list_outbox(DeliveryStatus.DEAD)}"
            return stats.pending == 0

        try:
            await eventually(settled, within=20.0, what="every job final and delivered")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- bridge log ---\n{bridge.log()}") from None
