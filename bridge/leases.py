"""Which sources and sinks this instance owns, when several instances share one store.

On a shared store (PostgreSQL) every polled source and every sink has a lease row
(`source:NAME`, `sink:NAME`), and every live instance a heartbeat lease (`instance:ID`).
`LeaseKeeper.round()` renews what this instance holds and takes free or expired leases up
to its fair share (the leases of a kind divided by the live instances, rounded up), so
sources spread across instances and a dead instance's leases are taken once they expire.
An instance holding more sources than its share gives one back per round; a poll under
way then fails its commit fence and commits nothing, and the new owner polls afresh.
Sinks are never given back while running: their sender may be mid-batch.

A lease lives `ttl` (a source's: its poll interval; sinks and heartbeats: the shortest of
those, within 1..10 s) and is renewed every third of the shortest ttl, so a dead owner's
source is polled again within about `ttl` plus one round, under two poll intervals.

On a store one process owns (SQLite, `store.shared` false) the keeper asks nothing: this
instance holds every lease, and behaviour is exactly the single-process one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import zlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from bridge.errors import StoreError
from bridge.metrics import Metrics
from bridge.store.base import Lease, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MIN_TTL = timedelta(seconds=1)
MAX_SHARED_TTL = timedelta(seconds=10)
SOURCE, SINK, INSTANCE = "source:", "sink:", "instance:"


def instance_id() -> str:
    """This process's name in the lease table: $BRIDGE_INSTANCE, else host and pid. A stable
    $BRIDGE_INSTANCE lets a restarted instance take its own leases back at once."""
    return os.environ.get("BRIDGE_INSTANCE") or f"{socket.gethostname()}-{os.getpid()}"


def lease_ttls(source_intervals: Mapping[str, timedelta],
               sinks: list[str]) -> dict[str, timedelta]:
    """Every lease this instance may hold, with its ttl (see the module docstring)."""
    ttls = {SOURCE + name: max(MIN_TTL, interval) for name, interval in source_intervals.items()}
    shortest = min(ttls.values(), default=MAX_SHARED_TTL)
    shared = min(MAX_SHARED_TTL, max(MIN_TTL, shortest))
    ttls.update({SINK + name: shared for name in sinks})
    return ttls


class LeaseKeeper:
    """Holds, renews and takes this instance's leases; `holds(name)` gates polls and sends."""

    def __init__(
        self,
        *,
        store: Store,
        instance: str,
        ttls: Mapping[str, timedelta],
        metrics: Metrics,
        clock: Clock,
        on_gained: Callable[[str, Lease], Awaitable[None]] | None = None,
    ):
        self._store = store
        self.instance = instance
        self._ttls = dict(ttls)
        self._metrics = metrics
        self._clock = clock
        self._on_gained = on_gained
        self.sole = not store.shared
        self._held: dict[str, datetime] = {}
        shortest = min(self._ttls.values(), default=MAX_SHARED_TTL)
        self._heartbeat_ttl = min(MAX_SHARED_TTL, max(MIN_TTL, shortest))
        self.tick = self._heartbeat_ttl.total_seconds() / 3
        self._task: asyncio.Task[None] | None = None

    def holds(self, name: str) -> bool:
        """True while this instance owns lease `name` (always, on a store it owns alone)."""
        if self.sole:
            return True
        until = self._held.get(name)
        return until is not None and self._clock() < until

    def held(self) -> list[str]:
        return sorted(self._ttls) if self.sole else sorted(self._held)

    def start(self) -> None:
        if not self.sole and self._task is None:
            self._task = asyncio.create_task(self._run(), name="leases")

    async def stop(self) -> None:
        """Stop renewing and give every lease back, so others take over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.sole:
            return
        names, self._held = list(self._held), {}
        for name in [*names, INSTANCE + self.instance]:
            with contextlib.suppress(StoreError):
                await self._store.release_lease(name, self.instance)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.round()
            except StoreError as exc:
                # Leases run out on their own; polls and sends stop when they do.
                log.error("lease round failed: %s", exc)
            except Exception:  # the keeper must outlive any bug in one round
                log.exception("lease round crashed")

    async def round(self) -> None:
        """Renew, take up to the fair share, give back beyond it; update the metrics."""
        if self.sole:
            self._export([])
            return
        store, me, now = self._store, self.instance, self._clock()
        await store.acquire_lease(INSTANCE + me, me, now, self._heartbeat_ttl)
        leases = {lease.name: lease for lease in await store.list_leases()}
        alive = {lease.owner for name, lease in leases.items()
                 if name.startswith(INSTANCE) and lease.until > now} | {me}
        for kind in (SOURCE, SINK):
            await self._balance(kind, leases, len(alive), now)
        self._export(list(leases.values()))

    async def _balance(self, kind: str, leases: Mapping[str, Lease], alive: int,
                       now: datetime) -> None:
        names = [name for name in self._ttls if name.startswith(kind)]
        if not names:
            return
        share = math.ceil(len(names) / alive)
        mine = [name for name in names if self._renewable(leases.get(name), now)]
        for name in names:
            if name in self._held and name not in mine:
                log.warning("lost lease %s (expired, or taken by another instance)", name)
                self._held.pop(name)
        for name in mine:
            await self._acquire(name, now)
        # Free or expired ones, in an order of this instance's own, so instances starting
        # together try different leases first.
        free = sorted((n for n in names if n not in mine and _free(leases.get(n), now)),
                      key=lambda n: zlib.crc32(f"{self.instance}\x1f{n}".encode()))
        for name in free:
            if len(self._held_of(kind)) >= share:
                break
            await self._acquire(name, now, gained=True)
        if kind == SOURCE and len(self._held_of(kind)) > share:
            surplus = max(self._held_of(kind), key=lambda n: zlib.crc32(n.encode()))
            log.info("giving lease %s back: %d instances share %d sources", surplus, alive,
                     len(names))
            self._held.pop(surplus, None)
            await self._store.release_lease(surplus, self.instance)

    def _renewable(self, lease: Lease | None, now: datetime) -> bool:
        return lease is not None and lease.owner == self.instance and lease.until > now

    def _held_of(self, kind: str) -> list[str]:
        return [name for name in self._held if name.startswith(kind)]

    async def _acquire(self, name: str, now: datetime, *, gained: bool = False) -> None:
        """Renew (or, `gained`, take) one lease; a taken one is announced to `on_gained`."""
        lease = await self._store.acquire_lease(name, self.instance, now, self._ttls[name])
        if lease is None:
            if self._held.pop(name, None) is not None:
                log.warning("lost lease %s to another instance", name)
            return
        self._held[name] = lease.until
        if not gained:
            return
        taken_from = lease.previous if lease.previous not in ("", self.instance) else None
        if taken_from is not None:
            self._metrics.lease_takeovers.labels(name).inc()
            log.warning("took over lease %s from %s (its lease expired)", name, taken_from)
        else:
            log.info("took lease %s", name)
        if self._on_gained is not None:
            await self._on_gained(name, lease)

    def _export(self, leases: list[Lease]) -> None:
        owners = self._metrics.source_owner
        owners.clear()
        now = self._clock()
        if self.sole:
            for name in self._ttls:
                if name.startswith(SOURCE):
                    owners.labels(name.removeprefix(SOURCE), self.instance).set(1)
            return
        for lease in leases:
            if lease.name.startswith(SOURCE) and lease.name in self._ttls and lease.until > now:
                owners.labels(lease.name.removeprefix(SOURCE), lease.owner).set(1)


def _free(lease: Lease | None, now: datetime) -> bool:
    return lease is None or lease.until <= now or not lease.owner
