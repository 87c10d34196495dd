"""Rate limits: the vendors' budget headers read, requests paced before the limit, a 429
waited out inside the poll, and `/metrics` showing budget and 429s per source.

The pacer's clock and sleep are injected (`FakeTime`): waits are recorded, never slept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.config.schema import JtlSource, TerminalSource, ZendeskSource
from bridge.errors import SourceUnavailable
from bridge.simulators.base import Fault
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.terminal import TerminalSimulator
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.sources.jtl import JtlWorkers
from bridge.sources.ratelimit import RatePacer
from bridge.sources.terminal import MIN_SPACING, TerminalSyncs
from bridge.sources.zendesk import ZendeskJobs
from tests.pacing_support import FakeTime

EMAIL = "ops@example.com"
TOKEN = "zd-token"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def pacer(time: FakeTime, **extra: Any) -> RatePacer:
    return RatePacer(clock=time.clock, sleep=time.sleep, **extra)


# --- reading the headers ------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "limit", "remaining", "window"), [
    ({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "699"}, 700, 699, 60.0),
    ({"ratelimit-limit": "100", "ratelimit-remaining": "3", "ratelimit-reset": "41"},
     100, 3, 60.0),
    ({"RateLimit-Limit": "10, 10;w=30", "RateLimit-Remaining": "9"}, 10, 9, 30.0),
    ({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "12",
      "X-RateLimit-Interval-Length-Seconds": "300"}, 600, 12, 300.0),
])
def test_each_vendors_budget_headers_are_read(headers: dict[str, str], limit: int,
                                              remaining: int, window: float) -> None:
    time = FakeTime()
    paced = pacer(time)
    paced.observe(headers)
    assert (paced.budget.limit, paced.budget.remaining, paced.budget.window) == (
        limit, remaining, window)


def test_an_announced_reset_is_when_the_budget_is_full_again() -> None:
    time = FakeTime()
    paced = pacer(time)
    paced.observe({"ratelimit-limit": "100", "ratelimit-remaining": "0", "ratelimit-reset": "41"})
    assert paced.budget.resets_at == time.now + 41


def test_headers_without_a_budget_change_nothing() -> None:
    paced = pacer(FakeTime())
    paced.observe({"Content-Type": "application/json"})
    assert (paced.budget.limit, paced.budget.remaining) == (None, None)


# --- pacing -------------------------------------------------------------------------------


async def test_plenty_of_budget_means_no_wait() -> None:
    time = FakeTime()
    paced = pacer(time)
    paced.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "500"})
    for _ in range(5):
        await paced.before_request()
    assert time.waits == []


async def test_a_low_budget_spreads_the_requests_over_what_is_left_of_the_window() -> None:
    time = FakeTime()
    paced = pacer(time)
    # 5 of 100 left, the window resets in 50 s: one request every 10 s.
    paced.observe({"ratelimit-limit": "100", "ratelimit-remaining": "5", "ratelimit-reset": "50"})
    await paced.before_request()
    await paced.before_request()
    assert time.waits == [pytest.approx(50 / 4)]


async def test_a_spent_budget_waits_for_the_reset_before_the_next_request() -> None:
    time = FakeTime()
    paced = pacer(time)
    paced.observe({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Interval-Length-Seconds": "30"})
    await paced.before_request()
    assert time.waits == [30.0]


async def test_a_fixed_spacing_holds_between_requests() -> None:
    time = FakeTime()
    paced = pacer(time, min_spacing=0.01)
    for _ in range(3):
        await paced.before_request()
    assert time.waits == [0.01, 0.01]


async def test_no_wait_is_longer_than_the_in_poll_maximum() -> None:
    time = FakeTime()
    paced = pacer(time, max_wait=5.0)
    paced.observe({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Interval-Length-Seconds": "3600"})
    await paced.before_request()
    assert time.waits == [5.0]


# --- over real sockets --------------------------------------------------------------------


async def test_zendesk_budget_is_read_from_its_answers(session: aiohttp.ClientSession) -> None:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN, rate_limit=700) as sim:
        sim.add_job(status="working")
        zendesk = ZendeskJobs(ZendeskSource.model_validate({
            "name": "zd", "kind": "zendesk", "base_url": sim.base_url,
            "auth": {"type": "basic", "username": f"{EMAIL}/token", "password": TOKEN}}),
            session)
        await zendesk.poll([])
        assert zendesk.budget is not None
        assert (zendesk.budget.limit, zendesk.budget.remaining) == (700, 699)


async def test_zendesk_slows_down_before_its_limit_instead_of_running_into_it(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN, rate_limit=20) as sim:
        for _ in range(3):
            sim.add_job(status="working")
        sim.list_limit = 0
        zendesk = ZendeskJobs(ZendeskSource.model_validate({
            "name": "zd", "kind": "zendesk", "base_url": sim.base_url,
            "auth": {"type": "basic", "username": f"{EMAIL}/token", "password": TOKEN}}),
            session, clock=time.clock, sleep=time.sleep)
        sim.used_this_minute = 18  # 2 of 20 left: below a tenth of the limit
        result = await zendesk.poll(list(sim.jobs))
        assert len(result.observations) == 3
        # The show_many after the list waited for its share of the minute, and no 429 came.
        assert time.waits and time.waits[0] > 0
        assert all(r.fault is None for r in sim.requests)
        assert zendesk.budget is not None and zendesk.budget.rate_limited == 0


async def test_jtl_429_without_retry_after_waits_out_the_announced_interval(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with JtlSimulator(token="jtl-token") as sim:
        sim.add_sync(state=2, progress=40)
        sim.rate_limit, sim.rate_interval = 1, 45
        jtl = _jtl(sim, session, time)
        sim.used_this_interval = 1  # spent before this bridge started
        time.after_sleep = sim.new_interval  # the interval passes while we wait
        result = await jtl.poll([])
        assert len(result.observations) == 1
        assert time.waits == [45.0]
        assert [r.fault for r in sim.requests] == [None, None]
        assert jtl.budget is not None and jtl.budget.rate_limited == 1


async def test_jtl_spent_budget_waits_for_the_next_interval_before_asking(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with JtlSimulator(token="jtl-token") as sim:
        sim.add_sync(state=2, progress=40)
        sim.rate_limit, sim.rate_interval = 1, 45
        jtl = _jtl(sim, session, time)
        await jtl.poll([])
        time.after_sleep = sim.new_interval
        await jtl.poll([])
        # The second poll waited for the interval instead of running into a 429.
        assert time.waits == [45.0]
        assert jtl.budget is not None and jtl.budget.rate_limited == 0


async def test_terminal_requests_are_spaced_for_100_per_second(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with TerminalSimulator(api_key="k", connection_token="c") as sim:
        terminal = TerminalSyncs(_terminal_config(sim), session, clock=time.clock,
                                 sleep=time.sleep)
        await terminal.poll(["sync_a", "sync_b"])
        requests = sim.request_count()
        assert requests == 5  # newest page, two unfinished lists, two lookups
        assert time.waits == [MIN_SPACING] * (requests - 1)


async def test_a_429_still_refused_after_its_waits_fails_once_with_retry_after(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with TerminalSimulator(api_key="k", connection_token="c") as sim:
        sim.fail_next(Fault.RATE_LIMITED, times=3, retry_after="2")
        terminal = TerminalSyncs(_terminal_config(sim), session, clock=time.clock,
                                 sleep=time.sleep)
        with pytest.raises(SourceUnavailable, match="HTTP 429") as caught:
            await terminal.poll([])
        assert caught.value.retry_after == 2.0
        assert time.waits.count(2.0) == 2


async def test_a_429_asking_for_longer_than_a_poll_may_wait_fails_at_once(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with TerminalSimulator(api_key="k", connection_token="c") as sim:
        sim.fail_next(Fault.RATE_LIMITED, retry_after="600")
        terminal = TerminalSyncs(_terminal_config(sim), session, clock=time.clock,
                                 sleep=time.sleep)
        with pytest.raises(SourceUnavailable) as caught:
            await terminal.poll([])
        # The scheduler waits it out (backoff never shorter than Retry-After).
        assert caught.value.retry_after == 600.0
        assert sim.request_count() == 1


def _jtl(sim: JtlSimulator, session: aiohttp.ClientSession, time: FakeTime) -> JtlWorkers:
    return JtlWorkers(JtlSource.model_validate({
        "name": "jtl", "kind": "jtl", "base_url": sim.base_url, "tenant_id": sim.tenant_id,
        "auth": {"type": "bearer", "token": "jtl-token"}}), session,
        clock=time.clock, sleep=time.sleep)


def _terminal_config(sim: TerminalSimulator, **extra: Any) -> TerminalSource:
    return TerminalSource.model_validate({
        "name": "terminal", "kind": "terminal", "base_url": sim.base_url,
        "connection_token": "c", "auth": {"type": "bearer", "token": "k"}, **extra})


# --- /metrics -----------------------------------------------------------------------------


async def test_metrics_show_the_remaining_budget_and_429s_per_source(tmp_path: Path) -> None:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN, rate_limit=700) as sim:
        sim.add_job(status="working")
        config = parse_config(f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"

[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "{sim.base_url}"
interval = "1h"
[sources.auth]
type = "basic"
username = "{EMAIL}/token"
password = "{TOKEN}"
""", str(tmp_path / "rules.toml"), {})
        bridge = Bridge(config, serve_http=False, drain_timeout=1.0)
        await bridge.__aenter__()
        try:
            # One answer refused (Retry-After 0: retried at once), then served.
            sim.fail_next(Fault.RATE_LIMITED, retry_after="0")
            await bridge.pipeline.poll("zendesk")
            text = bridge.metrics.render().decode()
        finally:
            await bridge.__aexit__(None, None, None)
    assert 'bridge_source_rate_limit_limit{source="zendesk"} 700.0' in text
    remaining = [line for line in text.splitlines()
                 if line.startswith('bridge_source_rate_limit_remaining{source="zendesk"}')]
    assert remaining and 0 < float(remaining[0].split()[-1]) < 700
    assert 'bridge_source_rate_limited_total{source="zendesk"} 1.0' in text


async def test_rate_limit_wait_0s_never_waits_inside_a_poll(
        session: aiohttp.ClientSession) -> None:
    time = FakeTime()
    async with TerminalSimulator(api_key="k", connection_token="c") as sim:
        sim.fail_next(Fault.RATE_LIMITED, retry_after="0.62")
        terminal = TerminalSyncs(_terminal_config(sim, rate_limit_wait="0s"), session,
                                 clock=time.clock, sleep=time.sleep)
        with pytest.raises(SourceUnavailable) as caught:
            await terminal.poll([])
        assert caught.value.retry_after == 0.62
        assert sim.request_count() == 1
        assert 0.62 not in time.waits
