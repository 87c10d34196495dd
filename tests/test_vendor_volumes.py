"""Real volumes and real hiccups over real sockets (issue 12's acceptance): a poll's cost is
bounded by the tracked jobs, not by the account's history; one failed lookup pages nobody;
runs between polls are each reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import Config, parse_config
from bridge.config.schema import TerminalSource, ZendeskSource
from bridge.model import EventKind
from bridge.pipeline import PollOutcome
from bridge.resources import bundled_templates
from bridge.simulators.base import Fault
from bridge.simulators.esales import EsalesSimulator
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.terminal import TerminalSimulator
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.sources.terminal import TerminalSyncs
from bridge.sources.zendesk import ZendeskJobs
from tests.pacing_support import FakeTime

TEMPLATES = bundled_templates()
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --- Terminal: the history only grows; a poll does not -----------------------------------


async def _terminal_poll_cost(session: aiohttp.ClientSession, finished: int) -> int:
    async with TerminalSimulator(api_key="k", connection_token="c") as sim:
        for n in range(finished):
            sim.add_sync(f"sync_OLD{n:05d}", status="completed" if n % 7 else "failed",
                         progress=100)
        running = sim.add_sync("sync_RUNNING", status="in_progress", progress=40)
        sim.add_sync("sync_QUEUED", status="requested")
        tracked = sim.add_sync("sync_TRACKED", status="in_progress")
        time = FakeTime()
        terminal = TerminalSyncs(TerminalSource.model_validate({
            "name": "terminal", "kind": "terminal", "base_url": sim.base_url,
            "connection_token": "c", "auth": {"type": "bearer", "token": "k"}}), session,
            clock=time.clock, sleep=time.sleep)
        # The tracked sync finished since the last poll: it drops out of the unfinished lists.
        sim.set_sync(tracked, status="completed", progress=100)
        # ... and finished long enough ago to have left the newest page too.
        sim.syncs[tracked] = sim.syncs.pop(tracked)
        for n in range(60):
            sim.add_sync(f"sync_NEW{n:03d}", status="completed")
        result = await terminal.poll([tracked, running])
        states = {job.id: job.raw_state for job in result.observations}
        assert states[running] == "in_progress"
        assert states["sync_QUEUED"] == "requested"
        assert states[tracked] == "completed"
        assert not result.missing
        return sim.request_count()


async def test_a_terminal_account_with_5000_finished_syncs_costs_what_one_with_5_does(
        session: aiohttp.ClientSession) -> None:
    small = await _terminal_poll_cost(session, 5)
    large = await _terminal_poll_cost(session, 5000)
    assert large == small
    # The newest page, the two unfinished lists and the one tracked sync they left out.
    assert small == 4


async def test_terminal_lists_ask_for_the_unfinished_statuses_with_a_limit(
        session: aiohttp.ClientSession) -> None:
    async with TerminalSimulator(api_key="k", connection_token="c") as sim:
        terminal = TerminalSyncs(TerminalSource.model_validate({
            "name": "terminal", "kind": "terminal", "base_url": sim.base_url,
            "connection_token": "c", "auth": {"type": "bearer", "token": "k"}}), session,
            sleep=FakeTime().sleep)
        await terminal.poll([])
        asked = [(r.query.get("status"), r.query.get("limit")) for r in sim.requests]
        assert asked == [(None, "50"), ("requested", "100"), ("in_progress", "100")]


# --- Zendesk: lookups in batches of 100 ---------------------------------------------------


async def test_a_zendesk_poll_of_250_unlisted_unfinished_jobs_makes_3_show_many_calls(
        session: aiohttp.ClientSession) -> None:
    async with ZendeskSimulator(email="a@b.c", api_token="t", rate_limit=10_000) as sim:
        tracked = [sim.add_job(status="working", total=10, progress=n % 10) for n in range(250)]
        for _ in range(100):
            sim.add_job(status="completed", total=1, progress=1)  # these fill the 100-job list
        zendesk = ZendeskJobs(ZendeskSource.model_validate({
            "name": "zd", "kind": "zendesk", "base_url": sim.base_url,
            "auth": {"type": "basic", "username": "a@b.c/token", "password": "t"}}), session,
            sleep=FakeTime().sleep)
        result = await zendesk.poll(tracked)
        assert {job.id for job in result.observations} >= set(tracked)
        batches = [r for r in sim.requests if r.path.endswith("/show_many.json")]
        assert [len(r.query["ids"].split(",")) for r in batches] == [100, 100, 50]
        assert sim.request_count() == 1 + 3
        assert not result.missing and not result.unknown


async def test_zendesk_ids_show_many_leaves_out_have_expired(
        session: aiohttp.ClientSession) -> None:
    async with ZendeskSimulator(email="a@b.c", api_token="t") as sim:
        sim.list_limit = 0
        kept = sim.add_job(status="working")
        gone = sim.add_job(status="working")
        sim.expire(gone)
        zendesk = ZendeskJobs(ZendeskSource.model_validate({
            "name": "zd", "kind": "zendesk", "base_url": sim.base_url,
            "auth": {"type": "basic", "username": "a@b.c/token", "password": "t"}}), session)
        result = await zendesk.poll([kept, gone])
        assert [job.id for job in result.observations] == [kept]
        assert result.missing == frozenset({gone})


async def test_a_failed_show_many_batch_leaves_only_its_jobs_unknown(
        session: aiohttp.ClientSession) -> None:
    async with ZendeskSimulator(email="a@b.c", api_token="t") as sim:
        sim.list_limit = 0
        tracked = [sim.add_job(status="working") for _ in range(150)]
        zendesk = ZendeskJobs(ZendeskSource.model_validate({
            "name": "zd", "kind": "zendesk", "base_url": sim.base_url,
            "auth": {"type": "basic", "username": "a@b.c/token", "password": "t"}}), session)
        sim.fail_next(Fault.SERVER_ERROR, matching="show_many")
        result = await zendesk.poll(tracked)
        assert result.unknown == frozenset(tracked[:100])
        assert {job.id for job in result.observations} == set(tracked[100:])
        assert not result.missing
        # The unknown ones are asked for again next poll.
        again = await zendesk.poll([])
        assert {job.id for job in again.observations} == set(tracked)


async def _started(config: Config, outcomes: list[PollOutcome]) -> Bridge:
    """A running bridge whose start-up poll is over, so the test owns the later polls."""
    first = asyncio.Event()

    def seen(outcome: PollOutcome) -> None:
        outcomes.append(outcome)
        first.set()

    bridge = Bridge(config, serve_http=False, observers=[seen], drain_timeout=1.0)
    await bridge.__aenter__()
    try:
        async with asyncio.timeout(10):
            await first.wait()
    except BaseException:
        await bridge.__aexit__(None, None, None)
        raise
    return bridge


# --- one hiccup pages nobody --------------------------------------------------------------


def _esales_bridge_config(tmp_path: Path, sim: EsalesSimulator, ids: list[str],
                          hook_url: str) -> str:
    listed = ", ".join(f'"{i}"' for i in ids)
    return f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
templates = "{TEMPLATES}"

[[sources]]
name = "esales"
kind = "esales"
base_url = "{sim.base_url}"
api_key = "esales-api-key"
interval = "1h"
timeout = "1s"
down_after = 1
ids = [{listed}]

[[sinks]]
name = "pager"
kind = "webhook"
url = "{hook_url}"
secret = "{SECRET}"

[[rules]]
name = "source-down"
on = "source_down"
template = "source_down.slack.j2"
notify = ["pager"]
"""


async def test_a_single_500_on_one_lookup_does_not_emit_source_down(tmp_path: Path) -> None:
    async with EsalesSimulator() as sim, WebhookReceiver() as receiver:
        first = sim.add_import("1000000000000000001", status="IN_PROGRESS")
        second = sim.add_import("1000000000000000002", status="IN_PROGRESS")
        outcomes: list[PollOutcome] = []
        config = parse_config(_esales_bridge_config(tmp_path, sim, [first, second],
                                                    receiver.url),
                              str(tmp_path / "rules.toml"), {})
        bridge = await _started(config, outcomes)
        try:
            outcomes.clear()
            sim.set_import(first, status="FAILURE", reason="Row 12: bad attribute")
            sim.set_import(second, status="SUCCESS")
            # down_after = 1: were the failed lookup a failed poll, this would page.
            sim.fail_next(Fault.SERVER_ERROR, matching=f"id={first}")
            outcome = await bridge.pipeline.poll("esales")
            assert outcome.error is None
            kinds = [(e.on, e.job.id if e.job else None) for o in outcomes for e in o.events]
            assert kinds == [(EventKind.TRANSITION, second)]
            # The job whose lookup failed is unchanged: neither moved nor missing.
            jobs = bridge.pipeline.jobs("esales")
            assert jobs[first].status.raw_state == "IN_PROGRESS"
            assert jobs[first].missing_since is None
            health = bridge.pipeline.health("esales")
            assert health is not None and health.up and health.failures == 0
            # The next poll sees it.
            await bridge.pipeline.poll("esales")
            assert bridge.pipeline.jobs("esales")[first].status.raw_state == "FAILURE"
        finally:
            await bridge.__aexit__(None, None, None)


# --- JTL: two failures between two polls are two notifications ----------------------------


async def test_a_jtl_sync_failing_restarting_and_failing_again_between_polls_notifies_twice(
        tmp_path: Path) -> None:
    async with JtlSimulator(token="jtl-token") as sim, WebhookReceiver(secret=SECRET) as hook:
        start = datetime.now(UTC) - timedelta(hours=1)
        sync_id = sim.add_sync(state=2, progress=50, text="Synchronising")
        sim.set_sync(sync_id, LastSync=_stamp(start))
        config = parse_config(f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
templates = "{TEMPLATES}"

[[sources]]
name = "jtl"
kind = "jtl"
base_url = "{sim.base_url}"
tenant_id = "{sim.tenant_id}"
interval = "1h"
[sources.auth]
type = "bearer"
token = "jtl-token"

[[sinks]]
name = "pager"
kind = "webhook"
url = "{hook.url}"
secret = "{SECRET}"

[[rules]]
name = "job-failed"
on = "transition"
to = ["failed"]
template = "transition.slack.j2"
notify = ["pager"]
""", str(tmp_path / "rules.toml"), {})
        bridge = await _started(config, [])
        try:
            # Fails (run 1), restarts, fails again (run 2): all before the next poll.
            sim.set_sync(sync_id, State=4, Progress=-1, ProgressText="QuotaExceeded",
                         LastSync=_stamp(start + timedelta(minutes=10)))
            await bridge.pipeline.poll("jtl")
            sim.set_sync(sync_id, State=1, LastSync=_stamp(start + timedelta(minutes=10)))
            sim.set_sync(sync_id, State=4, ProgressText="QuotaExceeded again",
                         LastSync=_stamp(start + timedelta(minutes=20)))
            await bridge.pipeline.poll("jtl")
            await hook.wait_for(lambda: len(hook.requests) >= 2, within=10)
        finally:
            await bridge.__aexit__(None, None, None)
        failures = [r.json() for r in hook.requests if r.json().get("type") == "job.transition"]
        assert len(failures) == 2
        assert [f["data"]["job"]["message"] for f in failures] == [
            "QuotaExceeded", "QuotaExceeded again"]


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
