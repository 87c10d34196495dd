"""Delivery: outbox rows -> sinks, with retries, backoff and dead letters (contract section 7).

One worker per sink claims that sink's due rows from the store, sends them in order, and
records the outcome. A sink that keeps failing only delays its own rows; polling never waits
on delivery. What to do after a failure is decided by `bridge.retries.next_step`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from bridge.config.schema import RetryPolicy
from bridge.delivered import Recorder, Sent
from bridge.errors import DeliveryError, RetryableDelivery, StoreError
from bridge.logs import for_sink
from bridge.metrics import Metrics
from bridge.model import Delivery
from bridge.retries import Step, StepKind, next_step
from bridge.sinks import sink_capabilities
from bridge.sinks.base import HasRoom, Sink
from bridge.store.base import Store, TakeNew

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# A claimed row is hidden from other workers this long; a crash makes it due again after.
CLAIM_LEASE = timedelta(seconds=60)
CLAIM_BATCH = 50
# Claimed batches in flight per sink that orders nothing itself (webhooks): four of 50 keep
# the 64 pooled connections busy while the next claim's transaction runs; with two, the
# sends waited on the claims' fsyncs (`make bench-peer`: ~2,200 -> ~2,770 notifications/s,
# the same CPU per notification).
SEND_AHEAD = 4
IDLE_WAIT = 1.0
# New rows handed over by the commit that queued them (`hand_over`) and not yet sent, per
# sink: beyond this the sink is behind, and its new rows wait in the outbox for the claim,
# which takes the most urgent first, instead of piling up in memory.
HANDED_LIMIT = 2_000
# A sink with room (`HasRoom`) is asked this often while its batches are being sent, and is
# handed at most this many batches at once.
ROOM_POLL = 0.25
MAX_BATCHES_WITH_ROOM = 20


class DeliveryWorkers:
    """Runs one delivery loop per sink until stopped; `wake()` after new outbox rows."""

    def __init__(
        self,
        *,
        store: Store,
        sinks: Mapping[str, Sink],
        policies: Mapping[str, RetryPolicy],
        metrics: Metrics,
        clock: Clock,
        may_send: Callable[[str], bool] = lambda sink: True,
        claim_lease: timedelta = CLAIM_LEASE,
        renew_every: float | None = None,
    ):
        self._store = store
        # Several instances on one store: only the holder of a sink's delivery lease sends
        # to it, so its rows go out in order and its pacing (Slack) holds across instances.
        self._may_send = may_send
        self._claim_lease = claim_lease
        self._renew_every = (renew_every if renew_every is not None
                             else claim_lease.total_seconds() / 3)
        self._sinks = sinks
        self._policies = policies
        self._metrics = metrics
        self._clock = clock
        self._wakeups = {name: asyncio.Event() for name in sinks}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._busy: dict[str, int] = dict.fromkeys(sinks, 0)
        # Whether a sink's last claim found nothing claimable: drain waits for all of them.
        self._idle: dict[str, bool] = dict.fromkeys(sinks, False)
        self._recorder = Recorder(store, metrics, self._wake_sinks)
        self._capabilities = {name: sink_capabilities(sink.config) for name, sink in sinks.items()}
        # The earliest retry this worker scheduled: it wakes for it rather than polling the
        # store every IDLE_WAIT (retry schedules may be shorter than that).
        self._next_retry: dict[str, datetime | None] = dict.fromkeys(sinks)
        self._handed: dict[str, int] = dict.fromkeys(sinks, 0)
        self._handed_tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        for name in self._sinks:
            self._tasks.append(asyncio.create_task(self._loop(name), name=f"deliver:{name}"))

    def takes_new(self) -> TakeNew | None:
        """The sinks whose new rows a commit may lease for this instance to send at once
        (bridge.store.taking): ones that order nothing themselves (a Slack sink paces and
        merges its batches), that this instance sends to, and that are not behind."""
        if self._stopping.is_set():
            return None
        sinks = frozenset(
            name for name in self._sinks
            if not self._capabilities[name].orders_itself and self._may_send(name)
            and self._handed[name] < HANDED_LIMIT)
        return TakeNew(sinks=sinks, until=self._clock() + self._claim_lease) if sinks else None

    def hand_over(self, deliveries: Sequence[Delivery], waiting: Collection[str] = ()) -> None:
        """Send rows a commit leased for this instance (`takes_new`), as a claimed batch, and
        wake the sinks in `waiting` (rows the commit left in the outbox) for their claim.
        After `stop` the rows stay leased and come back after their lease, or at the next
        start."""
        self._wake_sinks(waiting)
        if self._stopping.is_set():
            return
        by_sink: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_sink[delivery.notification.sink].append(delivery)
        for sink_name, batch in by_sink.items():
            self._handed[sink_name] += len(batch)
            task = self._start_batch(sink_name, batch, self._handed_tasks, "handed")

            def sent(_: asyncio.Task[None], sink: str = sink_name, count: int = len(batch)
                     ) -> None:
                self._handed[sink] -= count

            task.add_done_callback(sent)

    def _start_batch(self, sink_name: str, batch: list[Delivery],
                     tasks: set[asyncio.Task[None]], kind: str) -> asyncio.Task[None]:
        """Send `batch` in a task kept in `tasks` and counted busy until it ends."""
        task = asyncio.create_task(self._send_batch(sink_name, batch),
                                   name=f"deliver:{sink_name}:{kind}")
        tasks.add(task)
        self._busy[sink_name] += 1

        def ended(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            self._busy[sink_name] -= 1

        task.add_done_callback(ended)
        return task

    def wake(self) -> None:
        for event in self._wakeups.values():
            event.set()

    def _wake_sinks(self, sinks: Collection[str]) -> None:
        for name in sinks:
            self._wakeups[name].set()

    async def drain(self, seconds: float) -> None:
        """Stop after the rows due now are sent, or after `seconds`; the rest stays pending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        # Rows waiting behind a retry of their job are not claimable: "nothing claimable"
        # comes from the workers' own claims, not from counting pending rows.
        self._idle = dict.fromkeys(self._idle, False)
        while loop.time() < deadline and (
            any(self._busy.values()) or self._recorder.busy or not all(self._idle.values())
        ):
            self.wake()
            await asyncio.sleep(0.05)
        await self.stop()

    async def stop(self) -> None:
        self._stopping.set()
        self.wake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        handed = list(self._handed_tasks)
        for task in handed:
            task.cancel()
        await asyncio.gather(*handed, return_exceptions=True)
        # What was sent before the stop is recorded as sent, not sent again.
        await self._recorder.wait()

    async def _loop(self, sink_name: str) -> None:
        wakeup = self._wakeups[sink_name]
        # Batches of a sink that orders nothing itself are sent SEND_AHEAD at a time, so the
        # next claim overlaps the sends of the last one; a job's rows still go in order,
        # because a claimed row holds its job's later rows back until it is recorded.
        ahead = 1 if self._capabilities[sink_name].orders_itself else SEND_AHEAD
        sending: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                if not self._may_send(sink_name):
                    # Another instance sends to this sink; ours waits to take its lease over.
                    self._idle[sink_name] = True
                    wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), IDLE_WAIT)
                    continue
                extra = len(sending) >= ahead
                if extra and not await self._room_while_sending(sink_name, sending):
                    continue
                try:
                    claimed = await self._store.claim_due(
                        self._clock(), self._capabilities[sink_name].claim_batch or CLAIM_BATCH,
                        self._claim_lease, sink=sink_name
                    )
                    if extra:
                        claimed = await self._only_urgent(claimed)
                except StoreError as exc:
                    for_sink(log, sink_name).error("outbox claim failed for sink %s: %s",
                                                   sink_name, exc)
                    claimed = []
                if extra and not claimed:
                    # Nothing urgent to hand over: wait for a batch to finish or new rows.
                    wakeup.clear()
                    waiting = asyncio.ensure_future(wakeup.wait())
                    await asyncio.wait({waiting, *sending}, timeout=IDLE_WAIT,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
                    continue
                self._idle[sink_name] = not claimed
                if not claimed:
                    wakeup.clear()
                    waiting = asyncio.ensure_future(wakeup.wait())
                    await asyncio.wait({waiting, *sending}, timeout=self._idle_wait(sink_name),
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
                    continue
                self._start_batch(sink_name, claimed, sending, "batch")
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def _room_while_sending(self, sink_name: str, sending: set[asyncio.Task[None]]
                                  ) -> bool:
        """Wait for a batch to finish (False: claim as usual), or until the sink says it has
        room for another one while they are still being sent (True)."""
        sink = self._sinks[sink_name]
        if not isinstance(sink, HasRoom) or len(sending) >= MAX_BATCHES_WITH_ROOM:
            await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
            return False
        done, _ = await asyncio.wait(sending, timeout=ROOM_POLL,
                                     return_when=asyncio.FIRST_COMPLETED)
        return not done and sink.has_room()

    async def _only_urgent(self, claimed: list[Delivery]) -> list[Delivery]:
        """Of a batch claimed because the sink had room, the rows of jobs with an urgent row
        (and their earlier rows, which it may replace); the others go back to the outbox,
        due now. Handed over early, a "job started" post would only wait in the sink, and
        hold its job's failure back in the outbox behind it."""
        urgent = {(d.notification.source, d.notification.job_id) for d in claimed
                  if d.notification.priority.rank == 0}
        keep = [d for d in claimed if (d.notification.source, d.notification.job_id) in urgent]
        back = [d.id for d in claimed if (d.notification.source, d.notification.job_id)
                not in urgent]
        if back:
            await self._store.release(back, self._clock())
        return keep

    async def _send_batch(self, sink_name: str, claimed: list[Delivery]) -> None:
        renewing = asyncio.create_task(self._renew(sink_name, claimed),
                                       name=f"deliver:{sink_name}:renew")
        try:
            await self._send(sink_name, claimed)
        except Exception:
            # A store that fails while recording an outcome must not end this sink's
            # worker: the rows stay leased and come back after their lease.
            for_sink(log, sink_name).exception(
                "delivery to %s failed while recording outcomes", sink_name)
            await asyncio.sleep(IDLE_WAIT)
        finally:
            renewing.cancel()

    async def _renew(self, sink_name: str, claimed: list[Delivery]) -> None:
        """Keep a batch's claims alive while it is being sent: a rate-limited Slack batch can
        take longer than the lease, and an expired claim would be claimed and sent again."""
        ids = [d.id for d in claimed]
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                await self._store.renew_claims(ids, self._clock() + self._claim_lease)
            except StoreError as exc:
                for_sink(log, sink_name).error("could not renew claims for sink %s: %s",
                                               sink_name, exc)

    async def _send(self, sink_name: str, claimed: list[Delivery]) -> None:
        """Send one claimed batch, as the sink's capabilities say."""
        capabilities = self._capabilities[sink_name]
        if capabilities.orders_itself:
            # The sink queues each row in order as `send` is called, and only sees edits it
            # can coalesce if they arrive together: hand it the whole batch at once.
            steps = await asyncio.gather(*(self._deliver(sink_name, d) for d in claimed))
            if capabilities.edits_in_place:
                self._supersede(sink_name, claimed, steps)
            return
        # Order matters per job, not across jobs: send each job's rows in order, different
        # jobs side by side.
        lanes: dict[tuple[str, str | None], list[Delivery]] = defaultdict(list)
        for delivery in claimed:
            n = delivery.notification
            lanes[(n.source, n.job_id)].append(delivery)
        await asyncio.gather(*(self._deliver_in_order(sink_name, lane)
                               for lane in lanes.values()))

    def _supersede(
        self, sink_name: str, claimed: list[Delivery], steps: list[Step | None]
    ) -> None:
        """For a sink that edits in place (Slack `update` mode) a failed edit that a later
        edit of the same message overtook is stale: retrying it would put the message back
        to an older state. Like a coalesced edit, it counts as delivered (a terminal one is
        kept: it also posts a reply)."""
        delivered_after: set[tuple[str, str | None]] = set()
        for delivery, step in reversed(list(zip(claimed, steps, strict=True))):
            n = delivery.notification
            if n.job_id is None:
                continue  # a source event is a post of its own, never an edit of a message
            lane = (n.source, n.job_id)
            if step is None:
                delivered_after.add(lane)
            elif step.kind is StepKind.RETRY and lane in delivered_after and not n.terminal:
                for_sink(log, sink_name).info(
                    "delivery %s to %s superseded by a later edit of the same message",
                    delivery.id, sink_name)
                self._recorder.add(Sent(sink=sink_name, delivery=delivery, at=self._clock()))

    def _idle_wait(self, sink_name: str) -> float:
        retry_at, self._next_retry[sink_name] = self._next_retry[sink_name], None
        if retry_at is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.0, (retry_at - self._clock()).total_seconds()))

    async def _deliver_in_order(self, sink_name: str, deliveries: list[Delivery]) -> None:
        for index, delivery in enumerate(deliveries):
            step = await self._deliver(sink_name, delivery)
            if step is not None and step.kind is StepKind.RETRY:
                assert step.at is not None
                await self._hold_back(deliveries[index + 1 :], step.at)
                return
            # A dead-lettered row no longer holds its job's later rows back.

    async def _hold_back(self, deliveries: list[Delivery], at: datetime) -> None:
        """Keep a job's order behind a failed row: its later rows become due with it, not
        after their claim lease (a minute), and not before it."""
        if deliveries:
            await self._store.release([d.id for d in deliveries], at)

    async def _deliver(self, sink_name: str, delivery: Delivery) -> Step | None:
        """Send one row: None when delivered (recorded in the background), else the step
        taken after the failure."""
        sink = self._sinks[sink_name]
        try:
            await sink.send(delivery)
        except DeliveryError as exc:
            return await self._failed(sink_name, delivery, exc)
        except Exception as exc:  # a bug in a sink must not kill its worker or lose the row
            for_sink(log, sink_name).exception("sink %s raised unexpectedly; will retry", sink_name)
            return await self._failed(sink_name, delivery, _as_retryable(exc))
        self._recorder.add(Sent(sink=sink_name, delivery=delivery, at=self._clock()))
        return None

    async def _failed(self, sink_name: str, delivery: Delivery, error: DeliveryError) -> Step:
        now = self._clock()
        self._metrics.delivery_failures.labels(sink_name).inc()
        step = next_step(
            policy=self._policies[sink_name],
            delivery=delivery,
            error=error,
            now=now,
            jitter=random.uniform(-1, 1),
            max_retry_after=self._sinks[sink_name].config.max_retry_after,
        )
        if step.kind is StepKind.RETRY:
            assert step.at is not None
            await self._store.mark_retry(delivery.id, str(error), step.at)
            soonest = self._next_retry[sink_name]
            if soonest is None or step.at < soonest:
                self._next_retry[sink_name] = step.at
            for_sink(log, sink_name).warning(
                "delivery %s to %s failed (attempt %d): %s; retrying at %s",
                delivery.id, sink_name, delivery.attempts + 1, error, step.at.isoformat(),
            )
            return step
        await self._store.mark_dead(delivery.id, f"{step.kind}: {error}", now)
        self._metrics.dead_letters.labels(sink_name).inc()
        for_sink(log, sink_name).error(
            "delivery %s to %s dead-lettered (%s) after %d attempts: %s; "
            "`bridge outbox retry %s` re-queues it",
            delivery.id, sink_name, step.kind, delivery.attempts + 1,
            str(error).split("; fix the sink's config")[0], delivery.id,
        )
        return step


def _as_retryable(exc: Exception) -> DeliveryError:
    return RetryableDelivery(f"unexpected {type(exc).__name__}: {exc}")
