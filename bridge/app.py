"""The composition root: builds every stage from the config and owns their lifecycle.

    sources --poll--> Pipeline (detect -> rules -> render -> outbox, one transaction)
                         |                                   |
                   PollScheduler                      DeliveryWorkers --> sinks
                         \\------ HTTP server (API, push, dashboard, metrics) ------/

Everything is entered on one AsyncExitStack so shutdown runs in reverse order: stop polling,
drain deliveries (bounded), close sinks, the HTTP session and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from bridge.config.schema import Config
from bridge.deliver import DeliveryWorkers
from bridge.errors import BridgeError, SourceUnavailable
from bridge.groups.digest import Digests
from bridge.groups.flusher import Flusher
from bridge.leases import SINK, SOURCE, LeaseKeeper, instance_id, lease_ttls
from bridge.metrics import Metrics
from bridge.model import Event
from bridge.pipeline import Observer, Pipeline, PollOutcome
from bridge.poll_counts import PollCounter
from bridge.reminders import Reminders
from bridge.render import Renderer, compile_when
from bridge.rules import RuleBook
from bridge.scheduler import PollScheduler
from bridge.server.runtime import SourceView
from bridge.sinks import build_sink
from bridge.sinks.base import Sink
from bridge.sources import build_source, source_kind
from bridge.sources.base import Source
from bridge.sources.ratelimit import RateBudget
from bridge.store import open_store
from bridge.store.base import Lease, Store
from bridge.store.poll_buckets import PollBucket

log = logging.getLogger(__name__)
CONNECTIONS_PER_HOST = 64


def utc_now() -> datetime:
    return datetime.now(UTC)


def admin_token(config: Config) -> str | None:
    """The admin token for write routes: $BRIDGE_ADMIN_TOKEN, else `[bridge] admin_token`."""
    token = os.environ.get("BRIDGE_ADMIN_TOKEN")
    if token:
        return token
    return config.bridge.admin_token.get_secret_value() if config.bridge.admin_token else None


class Bridge:
    """A running bridge: `async with Bridge(config) as bridge: await bridge.wait()`."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utc_now,
        serve_http: bool = True,
        observers: Sequence[Observer] = (),
        drain_timeout: float = 10.0,
        wrap_source: Callable[[Source], Source] | None = None,
    ):
        self.config = config
        self.metrics = Metrics()
        self.clock = clock
        self.drain_timeout = drain_timeout
        self._serve_http = serve_http
        self._observers = list(observers)
        # Around each built source (bridge.record's RecordingSource while recording).
        self._wrap_source = wrap_source or (lambda source: source)
        self._stack = AsyncExitStack()
        self._stopped = asyncio.Event()
        self.store: Store
        self.session: aiohttp.ClientSession
        self._sources: dict[str, Source] = {}
        self.sinks: dict[str, Sink] = {}
        self.pipeline: Pipeline
        self.workers: DeliveryWorkers
        self.scheduler: PollScheduler | None = None
        self.leases: LeaseKeeper
        self.flusher: Flusher
        self.reminders: Reminders
        self._leases_started = False
        self.http_url: str | None = None

    @property
    def ready(self) -> bool:
        return self.scheduler.running if self.scheduler is not None else False

    async def __aenter__(self) -> Bridge:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _budgets(self) -> dict[str, RateBudget]:
        """Each source's rate-limit budget; a kind that requests nothing (push) or was added
        without one has none (`budget` is optional, see bridge.sources.base)."""
        found = {name: getattr(source, "budget", None) for name, source in self._sources.items()}
        return {name: budget for name, budget in found.items() if isinstance(budget, RateBudget)}

    async def _start(self) -> None:
        config = self.config
        self.store = open_store(config.bridge.state)
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        # Stopped after the drain (callbacks run in reverse): the last polls are written.
        self.poll_counts = PollCounter(self.store, self.clock)
        self.poll_counts.start()
        self._stack.push_async_callback(self.poll_counts.stop)
        # A crash leaves claims behind. One process per store (SQLite): they are all ours,
        # due again now. A shared store: only expired ones, the rest are live instances'.
        await self.store.release_claims(
            expired_by=self.clock() if self.store.shared else None)
        # Keep-alive connections are reused across requests; at most CONNECTIONS_PER_HOST
        # are open to one host (a webhook receiver) however many deliveries are in flight.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=CONNECTIONS_PER_HOST))
        self._stack.push_async_callback(self.session.close)
        self._sources = {s.name: self._wrap_source(build_source(s, self.session))
                         for s in config.sources}
        self.metrics.watch_budgets(self._budgets)
        for sink_config in config.sinks:
            sink = build_sink(sink_config, self.session, self.store)
            self.sinks[sink_config.name] = sink
            self._stack.push_async_callback(sink.aclose)
        polled = {n: s.config.interval for n, s in self._sources.items()
                  if source_kind(s.config).capabilities.polled}
        self.metrics.declare(polled, self.sinks)
        self.leases = LeaseKeeper(
            store=self.store, instance=instance_id(), ttls=lease_ttls(polled, list(self.sinks)),
            metrics=self.metrics, clock=self.clock, on_gained=self._gained)
        renderer = Renderer(config)
        rulebook = RuleBook(config.rules, compile_when)
        self.pipeline = Pipeline(
            config=config,
            store=self.store,
            sources=self._sources,
            rulebook=rulebook,
            renderer=renderer,
            metrics=self.metrics,
            clock=self.clock,
            instance=self.leases.instance,
        )
        await self.pipeline.load()
        # Given back last (after the drain): another instance then takes over at once.
        self._stack.push_async_callback(self.leases.stop)
        await self.leases.round()
        if self.store.shared:
            # Whoever held this instance's sinks before is gone (or is this instance, before
            # a restart): no one else sends to them now, so their claims are due again.
            for name in self.leases.held():
                if name.startswith(SINK):
                    await self.store.release_claims(sink=name.removeprefix(SINK))
        self._leases_started = True
        self.leases.start()
        self.workers = DeliveryWorkers(
            store=self.store,
            sinks=self.sinks,
            policies={s.name: s.retry for s in config.sinks},
            metrics=self.metrics,
            clock=self.clock,
            may_send=lambda sink: self.leases.holds(SINK + sink),
        )
        # The workers send the rows each commit queues: at once, or after waking to claim.
        self.pipeline.hand_new_rows_to(self.workers)
        self.pipeline.observers.append(self._remember_poll)
        self.pipeline.observers.extend(self._observers)
        self.workers.start()
        self._stack.push_async_callback(self._drain)
        # Stopped before the drain (callbacks run in reverse): no digest is queued after it.
        self.flusher = Flusher(store=self.store, digests=Digests(config, renderer),
                               clock=self.clock, metrics=self.metrics,
                               on_queued=self.workers.wake, finished=self._job_finished)
        self.flusher.start()
        self._stack.push_async_callback(self.flusher.stop)
        # Each sink's daily reminder of long silences (bridge.reminders), stopped with it.
        self.reminders = Reminders(config=config, store=self.store, renderer=renderer,
                                   clock=self.clock, metrics=self.metrics,
                                   on_queued=self.workers.wake)
        self.reminders.start()
        self._stack.push_async_callback(self.reminders.stop)
        self.scheduler = PollScheduler(polled, self._poll, clock=self.clock)
        self.scheduler.start()
        if self._serve_http:
            await self._start_http()

    async def _start_http(self) -> None:
        from bridge.server.app import create_app

        host, _, port = self.config.bridge.listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        app = create_app(self, admin_token=admin_token(self.config), listen=host)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, host, int(port))
        try:
            await site.start()
        except OSError as exc:
            raise BridgeError(
                f"cannot listen on {self.config.bridge.listen}: {exc.strerror or exc}; "
                "set [bridge] listen (or `bridge demo --listen`) to a free address, "
                "port 0 for any"
            ) from None
        bound = runner.addresses[0]
        self.http_url = f"http://{host}:{bound[1]}/"
        log.info("HTTP API and dashboard on %s", self.http_url)

    async def _gained(self, name: str, lease: Lease) -> None:
        """This instance took a lease: start from the state the previous owner left."""
        if not self._leases_started:
            return  # the first round, at start-up: the state was just loaded
        if name.startswith(SOURCE):
            source = name.removeprefix(SOURCE)
            await self.pipeline.reload(source)
            if self.scheduler is not None:
                self.scheduler.poll_soon(source)
        elif name.startswith(SINK):
            # The previous sender is gone (or stopped): what it had claimed is due again.
            await self.store.release_claims(sink=name.removeprefix(SINK))
            if hasattr(self, "workers"):
                self.workers.wake()

    def _job_finished(self, source: str, job_id: str) -> bool:
        """Whether nothing more is expected of a job (a group holding it may close)."""
        jobs = self.pipeline.jobs(source) if source in self._sources else {}
        job = jobs.get(job_id)
        return job is None or job.done

    async def _poll(self, name: str) -> tuple[bool, float | None]:
        if not self.leases.holds(SOURCE + name):
            return True, None  # another instance polls this source
        outcome = await self.pipeline.poll(name)
        if outcome.error is None:
            return True, None
        return False, outcome.error.retry_after

    async def _drain(self) -> None:
        # Let polls under way finish and commit (stopping the scheduler would cancel them),
        # but start no new one; then stop it for good.
        if self.scheduler is not None:
            self.scheduler.pause()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pipeline.wait_idle(), min(5.0, self.drain_timeout))
        if self.scheduler is not None:
            self.scheduler.stop()
        await self.workers.drain(self.drain_timeout)

    def stop(self) -> None:
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()

    # --- Runtime (for the HTTP server) ------------------------------------------------------

    async def sources(self) -> list[SourceView]:
        # On a shared store another instance may poll a source: its health is in the store.
        stored = ({h.source: h for h in await self.store.list_health()}
                  if self.store.shared else {})
        return [
            SourceView(config=s.config, capabilities=source_kind(s.config).capabilities,
                       lists_jobs=s.lists_jobs,
                       health=stored.get(name) or self.pipeline.health(name))
            for name, s in self._sources.items()
        ]

    def source(self, name: str) -> Source:
        return self._sources[name]

    def sink(self, name: str) -> Sink:
        return self.sinks[name]

    async def poll_buckets(self, since: datetime) -> list[PollBucket]:
        # This instance's latest polls first, so the page shows the poll that just ran.
        await self.poll_counts.flush()
        return await self.store.poll_buckets(since)

    def _remember_poll(self, outcome: PollOutcome) -> None:
        # For the dashboard's polls/errors chart (bridge.poll_counts); pushes are no polls.
        if not outcome.pushed:
            self.poll_counts.add(outcome.source, self.clock(),
                                 None if outcome.error is None else str(outcome.error))

    async def watch(self, source: str, job_id: str) -> bool:
        if source not in self._sources:
            raise KeyError(source)
        added = await self.pipeline.add_watch(source, job_id)
        if self.scheduler is not None:
            self.scheduler.poll_soon(source)
        return added

    async def unwatch(self, source: str, job_id: str) -> bool:
        if source not in self._sources:
            raise KeyError(source)
        return await self.pipeline.remove_watch(source, job_id)

    async def push(self, source: str, payload: Any) -> Sequence[Event]:
        if source not in self._sources:
            raise KeyError(source)
        observations = self._sources[source].parse_push(payload)
        if not observations:
            raise SourceUnavailable("the pushed body holds no job observation")
        outcome = await self.pipeline.push(source, observations)
        return outcome.events

    async def retry_deliveries(self, delivery_id: str | None) -> int:
        count = await self.store.retry_deliveries(delivery_id, self.clock())
        self.workers.wake()
        return count

    async def drop_deliveries(self, delivery_id: str | None) -> int:
        return await self.store.drop_deliveries(delivery_id)
