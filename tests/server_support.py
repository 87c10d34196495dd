"""Helpers for the HTTP server tests: a config with secrets, a runtime over the real SQLite
store with seeded rows, and the app served on a real socket on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge.config.loader import parse_config
from bridge.config.schema import Config
from bridge.metrics import Metrics
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
from bridge.server.app import create_app
from bridge.server.runtime import SourceView
from bridge.store import open_store
from bridge.store.base import PollCommit, Store

PUSH_SECRET = "whsec_" + base64.b64encode(b"push source key for tests only!!").decode()
TERMINAL_SECRET = "whsec_" + base64.b64encode(b"terminal push key, tests only").decode()
ADMIN_TOKEN = "admin-token-for-tests-7f3a"
SOURCE_TOKEN = "zendesk-api-token-5e1b9c"
ESALES_KEY = "esales-api-key-0c4d2e"
SINK_URL_SECRET = "T0001/B0002/slack-hook-secret-path"
SINK_SECRET = "whsec_" + base64.b64encode(b"sink signing key for tests only").decode()

CONFIG = """
[bridge]
state = "sqlite:///{db}"
listen = "127.0.0.1:8080"

[[sources]]
name = "zd"
kind = "zendesk"
base_url = "http://127.0.0.1:9"
interval = "30s"
[sources.auth]
type = "bearer"
token = "{source_token}"

[[sources]]
name = "imports"
kind = "esales"
base_url = "http://127.0.0.1:9"
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
connection_token = "{source_token}-conn"
secret = "{terminal_secret}"

[[sources]]
name = "quiet"
kind = "push"

[[sinks]]
name = "pager"
kind = "webhook"
url = "https://hooks.example.com/{sink_url_secret}"
secret = "{sink_secret}"

[[rules]]
name = "job-failed"
on = "transition"
template = "failed.j2"
notify = ["pager"]
"""

SECRETS = (
    PUSH_SECRET, TERMINAL_SECRET, ADMIN_TOKEN, SOURCE_TOKEN, ESALES_KEY, SINK_URL_SECRET,
    SINK_SECRET,
)


def make_config(tmp_path: Path) -> Config:
    text = CONFIG.format(
        db=tmp_path / "state.db", source_token=SOURCE_TOKEN, esales_key=ESALES_KEY,
        push_secret=PUSH_SECRET, terminal_secret=TERMINAL_SECRET,
        sink_url_secret=SINK_URL_SECRET, sink_secret=SINK_SECRET,
    )
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "failed.j2").write_text("{{ job.id }} failed")
    return parse_config(text, str(tmp_path / "rules.toml"), env={})


class FakeRuntime:
    """A Runtime over the real store and real Metrics; `push` records what it was given."""

    def __init__(self, config: Config, store: Store, *, ready: bool = True) -> None:
        self.config = config
        self.store = store
        self.metrics = Metrics()
        self.is_ready = ready
        self.pushed: list[tuple[str, Any]] = []
        self.health: dict[str, SourceHealth] = {}

    @property
    def ready(self) -> bool:
        return self.is_ready

    async def sources(self) -> Sequence[SourceView]:
        return [
            SourceView(config=s, lists_jobs=s.kind in ("zendesk", "terminal"),
                       health=self.health.get(s.name))
            for s in self.config.sources
        ]

    async def watch(self, source: str, job_id: str) -> bool:
        self.config.source(source)
        return await self.store.add_watch(source, job_id)

    async def unwatch(self, source: str, job_id: str) -> bool:
        self.config.source(source)
        return await self.store.remove_watch(source, job_id)

    async def push(self, source: str, payload: Any) -> Sequence[Event]:
        self.config.source(source)
        self.pushed.append((source, payload))
        return [Event(id=event_id("pushed", len(self.pushed)), on=EventKind.APPEARED,
                      source=source, at=datetime.now(UTC))]

    async def retry_deliveries(self, delivery_id: str | None) -> int:
        return await self.store.retry_deliveries(delivery_id, datetime.now(UTC))

    async def drop_deliveries(self, delivery_id: str | None) -> int:
        return await self.store.drop_deliveries(delivery_id)


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


async def seed(store: Store, now: datetime) -> Seeded:
    """Two zendesk jobs, their events, one dead and one pending delivery."""
    running = _job("job-running", JobState.RUNNING, "working", now, progress=40.0,
                   message="importing users")
    failed = _job("job-failed", JobState.FAILED, "failed", now, progress=70.0,
                  message="Printer on fire")
    appeared = Event(id=event_id("appeared", "job-running"), on=EventKind.APPEARED, source="zd",
                     at=now - timedelta(minutes=2), job=running.status)
    transition = Event(id=event_id("failed", "job-failed"), on=EventKind.TRANSITION, source="zd",
                       at=now - timedelta(minutes=1), job=failed.status,
                       from_state=JobState.RUNNING, to_state=JobState.FAILED)
    notes = [
        Notification(event_id=transition.id, rule="job-failed", sink="pager", source="zd",
                     job_id="job-failed", payload={"text": "job-failed failed"},
                     on=EventKind.TRANSITION, terminal=True),
        Notification(event_id=appeared.id, rule="job-failed", sink="pager", source="zd",
                     job_id="job-running", payload={"text": "job-running appeared"},
                     on=EventKind.APPEARED),
    ]
    await store.commit_poll(PollCommit(
        source="zd", upserts=[running, failed], events=[appeared, transition],
        notifications=notes, at=now,
        health=SourceHealth(source="zd", up=True, last_poll_at=now, last_latency=0.12),
    ))
    claimed = {d.notification.job_id: d for d in
               await store.claim_due(now, 10, timedelta(seconds=30))}
    dead, pending = claimed["job-failed"], claimed["job-running"]
    await store.mark_dead(dead.id, "HTTP 400: bad request", now)
    await store.mark_retry(pending.id, "HTTP 503: unavailable", now + timedelta(minutes=5))
    return Seeded(dead_id=dead.id, pending_id=pending.id,
                  event_ids=[appeared.id, transition.id])


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
    runtime: FakeRuntime
    seeded: Seeded | None

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        kwargs.setdefault("allow_redirects", False)
        async with self.http.request(method, self.url + path, **kwargs) as response:
            return Reply(status=response.status, text=await response.text(),
                         headers=dict(response.headers))

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("POST", path, **kwargs)

    async def outbox_status(self, delivery_id: str) -> DeliveryStatus | None:
        found = await self.runtime.store.get_delivery(delivery_id)
        return found.status if found else None


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
    """A FakeRuntime over a fresh SQLite store, optionally seeded, served on 127.0.0.1."""
    config = make_config(tmp_path)
    store = open_store(config.bridge.state)
    await store.open()
    try:
        runtime = FakeRuntime(config, store, ready=ready)
        seeded = await seed(store, datetime.now(UTC)) if with_rows else None
        app = create_app(runtime, admin_token=admin_token, listen=listen)
        async with serve(app) as url, aiohttp.ClientSession() as http:
            yield Harness(url=url, http=http, runtime=runtime, seeded=seeded)
    finally:
        await store.close()
