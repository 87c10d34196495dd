"""Helpers for the HTTP server tests: the real composition root (`bridge.app.Bridge`) over a
fresh SQLite store with seeded rows, its sources pointed at the seed-API simulators and its
sink at a local webhook receiver, and its app served on a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from bridge.app import Bridge
from bridge.config.loader import load_config, parse_config
from bridge.config.schema import Config
from bridge.model import (
    DeliveryStatus,
    Event,
    EventKind,
    JobState,
    JobStatus,
    Notification,
    SourceHealth,
    TrackedJob,
    event_id,
)
from bridge.pipeline import PollOutcome
from bridge.render import Renderer
from bridge.server.app import create_app
from bridge.simulators.esales import EsalesSimulator
from bridge.simulators.terminal import TerminalSimulator
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.store import open_store
from bridge.store.base import PollCommit, Store

PUSH_SECRET = "whsec_" + base64.b64encode(b"push source key for tests only!!").decode()
TERMINAL_SECRET = "whsec_" + base64.b64encode(b"terminal push key, tests only").decode()
ADMIN_TOKEN = "admin-token-for-tests-7f3a"
SOURCE_TOKEN = "zendesk-api-token-5e1b9c"
ESALES_KEY = "esales-api-key-0c4d2e"
TERMINAL_KEY = "sk_test_terminal-key-3a9f"
SINK_URL_SECRET = "T0001/B0002/slack-hook-secret-path"
SINK_SECRET = "whsec_" + base64.b64encode(b"sink signing key for tests only").decode()
ESALES_ID = "1234567890123456789"

# The polled sources: the harness waits for the first poll of each before a test starts.
POLLED = ("zd", "imports", "syncs")

CONFIG = """
[bridge]
state = "sqlite:///{db}"
listen = "127.0.0.1:8080"

[[sources]]
name = "zd"
kind = "zendesk"
base_url = "{zendesk_url}"
interval = "30s"
[sources.auth]
type = "bearer"
token = "{source_token}"

[[sources]]
name = "imports"
kind = "esales"
base_url = "{esales_url}"
api_key = "{esales_key}"

[[sources]]
name = "hooks"
kind = "push"
secret = "{push_secret}"
state = "status"
progress = "percent"
message = "note"

[[sources]]
name = "syncs"
kind = "terminal"
base_url = "{terminal_url}"
connection_token = "{source_token}-conn"
secret = "{terminal_secret}"
[sources.auth]
type = "bearer"
token = "{terminal_key}"

[[sources]]
name = "quiet"
kind = "push"

[[sinks]]
name = "pager"
kind = "webhook"
url = "{receiver_url}/{sink_url_secret}"
secret = "{sink_secret}"

[[rules]]
name = "job-failed"
on = "transition"
template = "failed.j2"
notify = ["pager"]
"""

SECRETS = (
    PUSH_SECRET, TERMINAL_SECRET, ADMIN_TOKEN, SOURCE_TOKEN, ESALES_KEY, TERMINAL_KEY,
    SINK_URL_SECRET, SINK_SECRET,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstreams:
    """The simulated APIs the bridge polls and the receiver its sink delivers to."""

    zendesk: ZendeskSimulator
    esales: EsalesSimulator
    terminal: TerminalSimulator
    receiver: WebhookReceiver


@asynccontextmanager
async def upstreams() -> AsyncIterator[Upstreams]:
    async with (
        ZendeskSimulator(bearer_token=SOURCE_TOKEN) as zendesk,
        EsalesSimulator(api_key=ESALES_KEY) as esales,
        TerminalSimulator(api_key=TERMINAL_KEY, connection_token=f"{SOURCE_TOKEN}-conn")
        as terminal,
        WebhookReceiver(secret=SINK_SECRET) as receiver,
    ):
        yield Upstreams(zendesk=zendesk, esales=esales, terminal=terminal, receiver=receiver)


def make_config(tmp_path: Path, up: Upstreams) -> Config:
    text = CONFIG.format(
        db=tmp_path / "state.db", source_token=SOURCE_TOKEN, esales_key=ESALES_KEY,
        push_secret=PUSH_SECRET, terminal_secret=TERMINAL_SECRET, terminal_key=TERMINAL_KEY,
        sink_url_secret=SINK_URL_SECRET, sink_secret=SINK_SECRET,
        zendesk_url=up.zendesk.base_url, esales_url=up.esales.base_url,
        terminal_url=up.terminal.base_url, receiver_url=up.receiver.url,
    )
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "failed.j2").write_text("{{ job.id }} failed")
    return parse_config(text, str(tmp_path / "rules.toml"), env={})


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    """Ids of the rows `seed` wrote."""

    dead_id: str
    pending_id: str
    event_ids: list[str] = field(default_factory=list)


def _job(job_id: str, state: JobState, raw: str, now: datetime, **status: Any) -> TrackedJob:
    return TrackedJob(
        source="zd",
        status=JobStatus(id=job_id, state=state, raw_state=raw, **status),
        first_seen=now - timedelta(minutes=10),
        last_seen=now,
        started_at=now - timedelta(minutes=9),
        moved_at=now - timedelta(minutes=1),
        finished_at=now if state.terminal else None,
    )


def mirror_in(zendesk: ZendeskSimulator) -> None:
    """The seeded jobs as the Zendesk API shows them, so polling it changes nothing."""
    zendesk.add_job("job-running", status="working", progress=40, total=100,
                    message="importing users")
    zendesk.add_job("job-failed", status="failed", progress=70, total=100,
                    message="Printer on fire")


def _notification(config: Config, event: Event) -> Notification:
    """What the rule `job-failed` queues for the sink `pager` about `event`, rendered by the
    real renderer so that the webhook sink can send it."""
    rule, sink = config.rules[0], config.sinks[0]
    assert event.job is not None
    return Notification(
        event_id=event.id, rule=rule.name, sink=sink.name, source=event.source,
        job_id=event.job.id, payload=Renderer(config).render(rule, event, sink), on=event.on,
        terminal=event.job.state.terminal, state=str(event.job.state),
    )


# The seeded deliveries were queued this long before the test starts: ages are asserted.
QUEUED_AGO = timedelta(minutes=10)


async def seed(store: Store, config: Config, now: datetime) -> Seeded:
    """Two zendesk jobs, their events, one dead and one pending delivery, queued
    `QUEUED_AGO` before `now`."""
    running = _job("job-running", JobState.RUNNING, "working", now, progress=40.0,
                   message="importing users")
    failed = _job("job-failed", JobState.FAILED, "failed", now, progress=70.0,
                  message="Printer on fire")
    appeared = Event(id=event_id("appeared", "job-running"), on=EventKind.APPEARED, source="zd",
                     at=now - timedelta(minutes=2), job=running.status)
    transition = Event(id=event_id("failed", "job-failed"), on=EventKind.TRANSITION, source="zd",
                       at=now - timedelta(minutes=1), job=failed.status,
                       from_state=JobState.RUNNING, to_state=JobState.FAILED)
    notes = [_notification(config, transition), _notification(config, appeared)]
    await store.commit_poll(PollCommit(
        source="zd", upserts=[running, failed], events=[appeared, transition],
        notifications=notes, at=now - QUEUED_AGO,
        health=SourceHealth(source="zd", up=True, last_poll_at=now, last_latency=0.12),
    ))
    claimed = {d.notification.job_id: d for d in
               await store.claim_due(now, 10, timedelta(seconds=30))}
    dead, pending = claimed["job-failed"], claimed["job-running"]
    await store.mark_dead(dead.id, "HTTP 400: bad request", now)
    await store.mark_retry(pending.id, "HTTP 503: unavailable", now + timedelta(minutes=5))
    return Seeded(dead_id=dead.id, pending_id=pending.id,
                  event_ids=[appeared.id, transition.id])


async def seed_state(config: Config, up: Upstreams) -> Seeded:
    """Seed the store before the bridge starts (it loads what is stored), and the Zendesk
    simulator with the same jobs."""
    mirror_in(up.zendesk)
    store = open_store(config.bridge.state)
    await store.open()
    try:
        return await seed(store, config, datetime.now(UTC))
    finally:
        await store.close()


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free port of 127.0.0.1; yields the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Served(NamedTuple):
    bridge: Bridge
    url: str
    http: aiohttp.ClientSession


@asynccontextmanager
async def served(config: Path, *, admin_token: str | None,
                 clock: Callable[[], datetime] | None = None) -> AsyncIterator[Served]:
    """The bridge of the config file `config`, its HTTP app served on a free port of
    127.0.0.1 and a client session to call it; `clock`, when given, is both's clock."""
    clocked: dict[str, Any] = {"clock": clock} if clock is not None else {}
    async with Bridge(load_config(config, env={}), serve_http=False, drain_timeout=1.0,
                      **clocked) as bridge:
        app = create_app(bridge, admin_token=admin_token, listen="127.0.0.1", **clocked)
        async with serve(app) as url, aiohttp.ClientSession() as http:
            yield Served(bridge, url, http)


class PollLog:
    """A pipeline observer: lets a test wait for what polls and pushes commit in the
    background (the scheduled first polls, the poll a watch starts)."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self._committed = asyncio.Event()

    def __call__(self, outcome: PollOutcome) -> None:
        self.sources.append(outcome.source)
        self._committed.set()

    async def wait_for(self, check: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not check():
                self._committed.clear()
                await self._committed.wait()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Harness:
    url: str
    http: aiohttp.ClientSession
    bridge: Bridge
    upstream: Upstreams
    polls: PollLog
    seeded: Seeded | None

    @property
    def receiver(self) -> WebhookReceiver:
        return self.upstream.receiver

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        kwargs.setdefault("allow_redirects", False)
        async with self.http.request(method, self.url + path, **kwargs) as response:
            return Reply(status=response.status, text=await response.text(),
                         headers=dict(response.headers))

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("POST", path, **kwargs)

    def health(self, source: str) -> SourceHealth:
        health = self.bridge.pipeline.health(source)
        assert health is not None, f"source {source} was never polled"
        return health

    async def fail_polls_of_imports(self, times: int) -> None:
        """Point eSales at a wrong cluster (every request answers 404), watch an import so
        the source has something to look up, and let `times` polls of it fail."""
        self.upstream.esales.cluster_found = False
        watched = await self.post("/v1/watches", json={"source": "imports", "id": ESALES_ID})
        assert watched.status == 201, watched.text
        # Watching polls the source once, in the background.
        await self.polls.wait_for(lambda: not self.health("imports").up)
        for _ in range(times - 1):
            await self.poll("imports")
        assert self.health("imports").failures == times

    async def poll(self, source: str) -> PollOutcome:
        """Poll a source now, as its schedule would."""
        return await self.bridge.pipeline.poll(source)

    async def events(self, source: str) -> list[Event]:
        """The stored events of a source, newest first."""
        return [event for _, event in await self.bridge.store.recent_events(source=source)]

    async def outbox_status(self, delivery_id: str) -> DeliveryStatus | None:
        found = await self.bridge.store.get_delivery(delivery_id)
        return found.status if found else None

    async def wait_until_delivered(self, delivery_id: str) -> None:
        """Wait until the sink's receiver accepted the delivery and the outbox recorded it."""
        await self.receiver.wait_for(lambda: delivery_id in self.receiver.delivered_ids())
        # The workers record a sent row in the background, with nothing to wait on but the
        # store itself.
        async with asyncio.timeout(10):
            for _ in itertools.count():
                if await self.outbox_status(delivery_id) is DeliveryStatus.DELIVERED:
                    return
                await asyncio.sleep(0.02)


def admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def harness(
    tmp_path: Path,
    *,
    admin_token: str | None = None,
    listen: str = "127.0.0.1:8080",
    with_rows: bool = True,
    ready: bool = True,
) -> AsyncIterator[Harness]:
    """A running `Bridge` over a fresh SQLite store, optionally seeded, served on 127.0.0.1.

    Yields once the first poll of every polled source is committed, so a test sees a settled
    state. `ready=False` stops the poll scheduler, as in a bridge that is not (or no longer)
    polling."""
    async with AsyncExitStack() as stack:
        up = await stack.enter_async_context(upstreams())
        config = make_config(tmp_path, up)
        seeded = await seed_state(config, up) if with_rows else None
        polls = PollLog()
        bridge = await stack.enter_async_context(
            Bridge(config, serve_http=False, observers=[polls], drain_timeout=1.0))
        await polls.wait_for(lambda: set(POLLED) <= set(polls.sources))
        if not ready:
            bridge.scheduler.stop()
        app = create_app(bridge, admin_token=admin_token, listen=listen)
        url = await stack.enter_async_context(serve(app))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield Harness(url=url, http=http, bridge=bridge, upstream=up, polls=polls,
                      seeded=seeded)
