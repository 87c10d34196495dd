"""Leases between instances (bridge.leases) and what the pipeline does with them, on an
injected clock: sources spread, a dead instance's leases are taken over and counted, a
poll from stale state (its lease lost meanwhile) commits and emits nothing, and on a store
one process owns (SQLite) nothing is asked of the lease table at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import Config, parse_config
from bridge.leases import LeaseKeeper, lease_ttls
from bridge.metrics import Metrics
from bridge.model import EventKind
from bridge.resources import bundled_templates
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.store.base import Lease
from tests.config_support import basic_zendesk_source, config_text, rule, sink
from tests.crash_support import eventually
from tests.store_fixtures import BACKENDS, opened, store_url
from tests.test_store_contract import note, queue

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
EMAIL, TOKEN = "ops@example.com", "zd-token-for-lease-tests"
# A webhook body as the render stage leaves it (a JSON string), not a default one.
BODY = {"text": "job 1 failed", "body": '{"note": "job 1 failed"}'}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async with store_url("postgresql", tmp_path) as value:
        yield value


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.mark.postgres
async def test_sources_spread_and_a_dead_instance_is_taken_over(pg_url: str) -> None:
    clock = Clock()
    ttls = lease_ttls(dict.fromkeys(["a", "b", "c", "d"], timedelta(seconds=30)), ["hook"])
    gained: dict[str, list[Lease]] = {"i1": [], "i2": []}

    def keeper(store: object, me: str, metrics: Metrics) -> LeaseKeeper:
        async def on_gained(name: str, lease: Lease) -> None:
            gained[me].append(lease)
        return LeaseKeeper(store=store, instance=me, ttls=ttls, metrics=metrics,  # type: ignore[arg-type]
                           clock=clock, on_gained=on_gained)

    async with opened(pg_url) as s1, opened(pg_url) as s2:
        m1, m2 = Metrics(), Metrics()
        k1, k2 = keeper(s1, "i1", m1), keeper(s2, "i2", m2)
        await k1.round()  # alone: takes everything
        assert k1.held() == ["sink:hook", "source:a", "source:b", "source:c", "source:d"]
        for _ in range(4):  # i2 arrives; i1 gives sources back one per round, i2 takes them
            await k2.round()
            await k1.round()
            clock.advance(1)
        sources = {k: [n for n in k.held() if n.startswith("source:")] for k in (k1, k2)}
        assert len(sources[k1]) == len(sources[k2]) == 2
        assert k1.holds("sink:hook") and not k2.holds("sink:hook")
        # Every instance's /metrics shows the whole map of owners.
        for name in sources[k2]:
            source = name.removeprefix("source:")
            assert sample(m1, "bridge_source_owner", source=source, instance="i2") == 1
        assert sample(m1, "bridge_lease_takeovers_total", lease="source:a") == 0

        # i1 dies (stops renewing). Before its leases run out, i2 takes nothing of them.
        clock.advance(5)
        await k2.round()
        assert not k2.holds("sink:hook") and len(k2.held()) == 2
        clock.advance(26)  # past i1's leases (30 s for sources, 10 s for the sink)
        await k2.round()
        assert k2.held() == ["sink:hook", "source:a", "source:b", "source:c", "source:d"]
        for name in [*sources[k1], "sink:hook"]:
            assert sample(m2, "bridge_lease_takeovers_total", lease=name) == 1
        assert {x.name for x in gained["i2"] if x.previous == "i1"} == {*sources[k1], "sink:hook"}
        assert not k1.holds("source:a")  # its own view has run out too


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id == "sqlite"])
async def test_a_store_one_process_owns_needs_no_lease(backend: str, tmp_path: Path) -> None:
    async with store_url(backend, tmp_path) as url, opened(url) as store:
        metrics = Metrics()
        keeper = LeaseKeeper(store=store, instance="solo",
                             ttls=lease_ttls({"a": timedelta(seconds=5)}, ["hook"]),
                             metrics=metrics, clock=Clock())
        await keeper.round()
        assert keeper.holds("source:a") and keeper.holds("sink:hook")
        assert await store.list_leases() == []
        assert sample(metrics, "bridge_source_owner", source="a", instance="solo") == 1


def config(url: str, zendesk: ZendeskSimulator, hook: str = "http://127.0.0.1:9/never") -> Config:
    text = config_text(
        basic_zendesk_source(zendesk.base_url, email=EMAIL, token=TOKEN),
        sink("hook", "webhook", url=hook), rule("any", notify=["hook"]),
        state=url, templates=bundled_templates())
    return parse_config(text, "rules.toml", {})


@pytest.mark.postgres
async def test_a_poll_from_stale_state_commits_and_emits_nothing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as zendesk:
        zendesk.add_job("j1", status="queued")
        cfg = config(pg_url, zendesk)
        monkeypatch.setenv("BRIDGE_INSTANCE", "a")
        async with Bridge(cfg, clock=clock, serve_http=False) as a:
            first = await a.pipeline.poll("zendesk")
            assert [e.on for e in first.events] == [EventKind.APPEARED]
            monkeypatch.setenv("BRIDGE_INSTANCE", "b")
            async with Bridge(cfg, clock=clock, serve_http=False) as b:
                assert not b.leases.holds("source:zendesk")
                assert await b._poll("zendesk") == (True, None)  # not its source: no request
                polls_so_far = zendesk.request_count("job_statuses.json")
                zendesk.set_job("j1", status="working")
                clock.advance(2 * 3600)  # a stops renewing; its lease runs out
                await b.leases.round()  # b takes over, reads the state a left, polls at once
                assert b.leases.holds("source:zendesk")

                async def b_polled() -> bool:
                    return len(await b.store.recent_events()) == 2
                await eventually(b_polled, within=10, what="b's first poll")
                # a's poll was under way when it lost the lease: it saw the same change
                # from its stale state, and must commit nothing of it.
                stale = await a.pipeline.poll("zendesk")
                assert stale.events == () and stale.error is None
                assert sample(a.metrics, "bridge_stale_commits_total", source="zendesk") == 1
                assert zendesk.request_count("job_statuses.json") == polls_so_far + 2
                stored = [e for _, e in await b.store.recent_events()]
                assert [e.on for e in reversed(stored)] == [EventKind.APPEARED,
                                                            EventKind.TRANSITION]
                assert (await b.store.outbox_stats()).pending == 1
                # a reloaded what b wrote: it now knows the job is running.
                assert str(a.pipeline.jobs("zendesk")["j1"].status.state) == "running"


@pytest.mark.postgres
async def test_a_new_sender_releases_the_claims_a_dead_one_left(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a dead instance had claimed for a sink go out as soon as another instance
    holds the sink's lease, not a claim lease (a minute) later."""
    clock = Clock()
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as zendesk, \
            WebhookReceiver() as receiver, opened(pg_url) as store:
        await queue(store, note(1, sink="hook", payload=BODY))
        assert len(await store.claim_due(T0, 10, timedelta(seconds=60), sink="hook")) == 1
        cfg = config(pg_url, zendesk, receiver.url)
        monkeypatch.setenv("BRIDGE_INSTANCE", "successor")
        async with Bridge(cfg, clock=clock, serve_http=False):
            await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 1, within=10)
