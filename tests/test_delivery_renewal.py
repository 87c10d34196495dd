"""A batch being sent keeps its claims: the delivery worker renews them while the sink is
slow (a rate-limited Slack batch can outlast the claim lease), so no other instance claims
and sends the same rows meanwhile. Real sockets (a slow webhook receiver), both backends,
the lease times on an injected clock."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from bridge.config import parse_config
from bridge.deliver import DeliveryWorkers
from bridge.metrics import Metrics
from bridge.simulators.webhook_receiver import Reply, WebhookReceiver
from bridge.sinks import build_sink
from tests import store_fixtures
from tests.crash_support import eventually
from tests.store_fixtures import opened
from tests.test_leases import Clock
from tests.test_store_contract import T0, note, queue

LEASE = timedelta(seconds=60)
# Not a default body (the receiver's schema check leaves it alone): the sink sends it as is.
BODY = {"text": "job 1 failed", "body": '{"note": "job 1 failed"}'}


url = store_fixtures.backend_url


async def test_claims_are_renewed_while_a_slow_batch_is_sent(url: str) -> None:
    clock = Clock()
    async with WebhookReceiver() as receiver, opened(url) as store, opened(url) as other, \
            aiohttp.ClientSession() as session:
        receiver.script([Reply(status=200, delay=1.5)])
        config = parse_config(f"""
[[sinks]]
name = "slack"
kind = "webhook"
url = "{receiver.url}"
timeout = "10s"
""", "rules.toml", {})
        sink = build_sink(config.sinks[0], session, store)
        await queue(store, note(1, sink="slack", payload=BODY))
        workers = DeliveryWorkers(store=store, sinks={"slack": sink},
                                  policies={"slack": config.sinks[0].retry}, metrics=Metrics(),
                                  clock=clock, claim_lease=LEASE, renew_every=0.02)
        workers.start()
        try:
            [row] = await store.list_outbox()

            async def next_attempt_is(at: object) -> bool:
                found = await store.get_delivery(row.id)
                return found is not None and found.next_attempt_at == at

            await eventually(lambda: next_attempt_is(T0 + LEASE), within=5, what="the claim")
            clock.advance(50)  # the send goes on; the claim would end at T0 + 60 s
            await eventually(lambda: next_attempt_is(T0 + timedelta(seconds=110)), within=5,
                             what="the claim renewed while sending")
            # Past the first lease, another instance still cannot claim the row.
            assert await other.claim_due(T0 + timedelta(seconds=90), 10, LEASE,
                                         sink="slack") == []

            async def delivered() -> bool:
                found = await store.get_delivery(row.id)
                return found is not None and str(found.status) == "delivered"

            await eventually(delivered, within=10, what="the slow delivery to finish")
        finally:
            await workers.stop()
            await sink.aclose()
    assert len(receiver.delivered_ids()) == 1


async def test_only_the_holder_of_a_sinks_lease_sends_to_it(url: str) -> None:
    clock = Clock()
    async with WebhookReceiver() as receiver, opened(url) as store, \
            aiohttp.ClientSession() as session:
        config = parse_config(f"""
[[sinks]]
name = "hook"
kind = "webhook"
url = "{receiver.url}"
""", "rules.toml", {})
        sink = build_sink(config.sinks[0], session, store)
        await queue(store, note(1, sink="hook", payload=BODY))
        holding = False
        workers = DeliveryWorkers(store=store, sinks={"hook": sink},
                                  policies={"hook": config.sinks[0].retry}, metrics=Metrics(),
                                  clock=clock, may_send=lambda name: holding)
        workers.start()
        try:
            await workers.drain(0.3)  # not the holder: nothing is claimed
            assert receiver.requests == []
            assert (await store.outbox_stats()).pending == 1
        finally:
            await workers.stop()
        holding = True
        workers = DeliveryWorkers(store=store, sinks={"hook": sink},
                                  policies={"hook": config.sinks[0].retry}, metrics=Metrics(),
                                  clock=clock, may_send=lambda name: holding)
        workers.start()
        try:
            await workers.drain(5)
        finally:
            await workers.stop()
            await sink.aclose()
    assert len(receiver.delivered_ids()) == 1

