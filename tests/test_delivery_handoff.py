"""The delivery workers send the rows a commit took for them at once (bridge.store.taking):
no claim, no wait for one; a failed one retries like any claimed row. Real sockets (a
webhook receiver verifying signatures with `standardwebhooks`), every store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import aiohttp

from bridge.config import parse_config
from bridge.deliver import DeliveryWorkers
from bridge.metrics import Metrics
from bridge.model import DeliveryStatus
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.sinks import build_sink
from bridge.stages.enqueue import Enqueue
from bridge.store.base import PollCommit, Store
from tests import store_fixtures
from tests.crash_support import SECRET, eventually, webhook_sink
from tests.store_fixtures import opened
from tests.test_store_contract import T0, note

url = store_fixtures.backend_url
BODY = {"text": "job failed", "body": '{"note": "job failed"}'}


@asynccontextmanager
async def workers_for(store: Store, receiver: WebhookReceiver, *,
                      may_send: Callable[[str], bool] = lambda sink: True,
                      clock: Callable[[], datetime] = lambda: T0,
                      ) -> AsyncIterator[DeliveryWorkers]:
    """Delivery workers for one webhook sink `hook`, not started: no claim loop runs."""
    config = parse_config(webhook_sink(receiver.url, name="hook"), "rules.toml", {})
    async with aiohttp.ClientSession() as session:
        sink = build_sink(config.sinks[0], session, store)
        workers = DeliveryWorkers(store=store, sinks={"hook": sink},
                                  policies={"hook": config.sinks[0].retry}, metrics=Metrics(),
                                  clock=clock, may_send=may_send)
        try:
            yield workers
        finally:
            await workers.stop()
            await sink.aclose()


async def test_a_committed_row_is_sent_by_its_commit_without_a_claim(url: str) -> None:
    async with WebhookReceiver(secret=SECRET) as receiver, opened(url) as store, \
            workers_for(store, receiver) as workers:
        enqueue = Enqueue(store)
        enqueue.handoff = workers
        row = note(1, sink="hook", payload=BODY)

        await enqueue.run_group([PollCommit(source="src", notifications=(row,), at=T0)])

        await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 1)
        [request] = receiver.requests
        assert request.verified is True
        assert request.webhook_id == row.delivery_id
        await eventually(lambda: _is(store, row.delivery_id, DeliveryStatus.DELIVERED),
                         within=5, what="the handed row recorded as delivered")


async def test_a_handed_row_that_fails_waits_for_its_retry_in_the_outbox(url: str) -> None:
    async with WebhookReceiver(secret=SECRET) as receiver, opened(url) as store, \
            workers_for(store, receiver) as workers:
        receiver.script([503])
        enqueue = Enqueue(store)
        enqueue.handoff = workers
        row = note(1, sink="hook", payload=BODY)

        await enqueue.run_group([PollCommit(source="src", notifications=(row,), at=T0)])

        async def retrying() -> bool:
            found = await store.get_delivery(row.delivery_id)
            return found is not None and found.attempts == 1 and found.next_attempt_at is not None
        await eventually(retrying, within=5, what="the failed attempt recorded for its retry")
        [again] = await store.claim_due(T0 + timedelta(seconds=1), 10, timedelta(seconds=60))
        assert again.id == row.delivery_id


async def test_only_sinks_this_instance_sends_to_are_taken(url: str) -> None:
    async with WebhookReceiver(secret=SECRET) as receiver, opened(url) as store:
        async with workers_for(store, receiver, may_send=lambda sink: False) as elsewhere:
            assert elsewhere.takes_new() is None
        async with workers_for(store, receiver) as here:
            take = here.takes_new()
            assert take is not None and take.sinks == {"hook"}
            assert take.until == T0 + timedelta(seconds=60)
            await here.stop()
            assert here.takes_new() is None


async def _is(store: Store, delivery_id: str, status: DeliveryStatus) -> bool:
    found = await store.get_delivery(delivery_id)
    return found is not None and found.status is status
