"""The terminal source against the Terminal simulator: states, cursor pages, lookups, push."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import TerminalSource
from bridge.errors import SourceMisconfigured, SourceUnavailable
from bridge.model import JobState
from bridge.simulators.base import Fault
from bridge.simulators.terminal import TerminalSimulator
from bridge.sources import build_source
from bridge.sources.terminal import DEFAULT_BASE_URL, RECENT_LIMIT, TerminalSyncs
from tests.pacing_support import FakeTime

API_KEY = "sk_live_terminal_secret_1"
CONNECTION = "con_tkn_22vUhkC6tgre4kwaYfUkCDA1rzn6eyb4"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[TerminalSimulator]:
    async with TerminalSimulator(api_key=API_KEY, connection_token=CONNECTION) as s:
        yield s


def source(sim: TerminalSimulator, session: aiohttp.ClientSession, *,
           time: FakeTime | None = None, **extra: Any) -> TerminalSyncs:
    data: dict[str, Any] = {
        "name": "terminal", "kind": "terminal", "base_url": sim.base_url, "timeout": "2s",
        "connection_token": CONNECTION, "auth": {"type": "bearer", "token": API_KEY},
    }
    config = TerminalSource.model_validate({**data, **extra})
    if time is None:
        built = build_source(config, session)
        assert isinstance(built, TerminalSyncs)
        return built
    return TerminalSyncs(config, session, clock=time.clock, sleep=time.sleep)


@pytest.mark.parametrize(("raw", "state"), [
    ("requested", JobState.PENDING), ("in_progress", JobState.RUNNING),
    ("completed", JobState.SUCCEEDED), ("failed", JobState.FAILED),
    ("cancelled", JobState.UNKNOWN),
])
async def test_raw_states_map_to_canonical(sim: TerminalSimulator,
                                           session: aiohttp.ClientSession,
                                           raw: str, state: JobState) -> None:
    sync_id = sim.add_sync(status=raw)
    [job] = (await source(sim, session).poll([])).observations
    assert (job.id, job.state, job.raw_state) == (sync_id, state, raw)


async def test_failure_reason_is_the_message(sim: TerminalSimulator,
                                             session: aiohttp.ClientSession) -> None:
    sim.add_sync(status="failed", progress=40, failure_reason="Provider returned 503")
    [job] = (await source(sim, session).poll([])).observations
    assert (job.message, job.progress) == ("Provider returned 503", 40.0)
    assert job.fields["attempts"] == 1


async def test_list_follows_next_cursor_to_the_end(sim: TerminalSimulator,
                                                   session: aiohttp.ClientSession) -> None:
    sim.page_size = 2
    ids = {sim.add_sync(status="in_progress") for _ in range(5)}
    result = await source(sim, session).poll([])
    assert {job.id for job in result.observations} == ids
    assert result.complete
    running = [r for r in sim.requests if r.query.get("status") == "in_progress"]
    assert [r.query.get("cursor") for r in running] == [None, "cur_2", "cur_4"]


async def test_sends_bearer_and_connection_token(sim: TerminalSimulator,
                                                 session: aiohttp.ClientSession) -> None:
    await source(sim, session).poll([])
    headers = sim.requests[0].headers
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["Connection-Token"] == CONNECTION


async def test_tracked_id_absent_from_list_is_looked_up_and_404_is_missing(
        sim: TerminalSimulator, session: aiohttp.ClientSession) -> None:
    result = await source(sim, session).poll(["sync_GONE"])
    assert result.missing == frozenset({"sync_GONE"})
    assert sim.request_count("/syncs/sync_GONE") == 1


async def test_wrong_connection_token_is_misconfigured_and_secret_free(
        sim: TerminalSimulator, session: aiohttp.ClientSession) -> None:
    wrong = "con_tkn_wrong_wrong_wrong"
    with pytest.raises(SourceMisconfigured) as caught:
        await source(sim, session, connection_token=wrong).poll([])
    message = str(caught.value)
    assert "connection_token" in message
    assert wrong not in message
    assert API_KEY not in message


@pytest.mark.parametrize("value", ["0.62", "3"])
async def test_a_429_is_waited_out_per_retry_after_including_fractions(
        sim: TerminalSimulator, session: aiohttp.ClientSession, value: str) -> None:
    time = FakeTime()
    sync_id = sim.add_sync(status="in_progress")
    sim.fail_next(Fault.RATE_LIMITED, retry_after=value)
    result = await source(sim, session, time=time).poll([])
    assert [job.id for job in result.observations] == [sync_id]
    assert float(value) in time.waits


@pytest.mark.parametrize("value", ["0.62", "3"])
async def test_a_429_that_persists_after_its_waits_fails_with_retry_after(
        sim: TerminalSimulator, session: aiohttp.ClientSession, value: str) -> None:
    time = FakeTime()
    sim.fail_next(Fault.RATE_LIMITED, times=3, retry_after=value)
    terminal = source(sim, session, time=time)
    with pytest.raises(SourceUnavailable) as caught:
        await terminal.poll([])
    assert caught.value.retry_after == float(value)
    assert "HTTP 429" in str(caught.value)
    assert [w for w in time.waits if w == float(value)] == [float(value)] * 2
    assert sim.request_count("/syncs") == 3
    assert terminal.budget is not None and terminal.budget.rate_limited == 3


@pytest.mark.parametrize(("fault", "error"), [
    (Fault.SERVER_ERROR, SourceUnavailable), (Fault.MALFORMED_JSON, SourceUnavailable),
    (Fault.HTML_ERROR, SourceUnavailable), (Fault.UNAUTHORIZED, SourceMisconfigured),
    (Fault.WRONG_SHAPE, SourceUnavailable),
])
async def test_faults_never_leak_credentials(sim: TerminalSimulator,
                                             session: aiohttp.ClientSession,
                                             fault: Fault, error: type[Exception]) -> None:
    sim.fail_next(fault)
    with pytest.raises(error) as caught:
        await source(sim, session).poll([])
    assert API_KEY not in str(caught.value)
    assert CONNECTION not in str(caught.value)


async def test_schema_drift_names_the_field(sim: TerminalSimulator,
                                            session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.WRONG_SHAPE)
    with pytest.raises(SourceUnavailable, match=r"syncs response\.results"):
        await source(sim, session).poll([])


async def test_sync_without_status_is_drift(sim: TerminalSimulator,
                                            session: aiohttp.ClientSession) -> None:
    sync_id = sim.add_sync()
    del sim.syncs[sync_id]["status"]
    with pytest.raises(SourceUnavailable, match=r"results\[0\]\.status is missing"):
        await source(sim, session).poll([])


async def test_webhook_payload_is_parsed(sim: TerminalSimulator,
                                         session: aiohttp.ClientSession) -> None:
    sync_id = sim.add_sync(status="completed", progress=100)
    payload = sim.webhook_event(sync_id)
    assert payload["type"] == "sync.completed"
    [job] = source(sim, session).parse_push(payload)
    assert (job.id, job.state, job.progress) == (sync_id, JobState.SUCCEEDED, 100.0)


@pytest.mark.parametrize("kind", ["sync.failed", "sync.requested", "sync.updated"])
def test_any_sync_event_type_carries_a_sync(kind: str) -> None:
    terminal = TerminalSyncs(TerminalSource(name="t", kind="terminal",
                                            connection_token=CONNECTION),  # type: ignore[arg-type]
                             session=None)  # type: ignore[arg-type]
    payload = {"type": kind, "detail": {"sync": {"id": "sync_1", "status": "failed",
                                                 "failureReason": "Token revoked"}}}
    [job] = terminal.parse_push(payload)
    assert (job.id, job.state, job.message) == ("sync_1", JobState.FAILED, "Token revoked")


def test_non_sync_event_is_ignored() -> None:
    terminal = TerminalSyncs(TerminalSource(name="t", kind="terminal",
                                            connection_token=CONNECTION),  # type: ignore[arg-type]
                             session=None)  # type: ignore[arg-type]
    assert terminal.parse_push({"type": "connection.created", "detail": {}}) == []


def test_push_without_detail_sync_is_drift() -> None:
    terminal = TerminalSyncs(TerminalSource(name="t", kind="terminal",
                                            connection_token=CONNECTION),  # type: ignore[arg-type]
                             session=None)  # type: ignore[arg-type]
    with pytest.raises(SourceUnavailable, match=r"detail\.sync"):
        terminal.parse_push({"type": "sync.completed", "detail": {}})


async def test_default_base_url_is_terminals(session: aiohttp.ClientSession) -> None:
    terminal = TerminalSyncs(TerminalSource(name="t", kind="terminal",
                                            connection_token=CONNECTION),  # type: ignore[arg-type]
                             session)
    assert terminal.client.base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(("kind", "state"), [
    ("sync.requested", JobState.PENDING), ("sync.started", JobState.RUNNING),
    ("sync.completed", JobState.SUCCEEDED), ("sync.failed", JobState.FAILED),
])
def test_the_real_event_names_give_the_state_when_the_sync_carries_none(
        kind: str, state: JobState) -> None:
    terminal = TerminalSyncs(TerminalSource(name="t", kind="terminal",
                                            connection_token=CONNECTION),  # type: ignore[arg-type]
                             session=None)  # type: ignore[arg-type]
    payload = {"id": "evt_1", "type": kind, "timestamp": "2021-01-06T03:24:53.000Z",
               "detail": {"connection": {"id": "conn_1"}, "sync": {"id": "sync_1"}}}
    [job] = terminal.parse_push(payload)
    assert (job.id, job.state) == ("sync_1", state)


async def test_the_simulators_webhooks_parse_for_every_status(
        sim: TerminalSimulator, session: aiohttp.ClientSession) -> None:
    terminal = source(sim, session)
    for status in ("requested", "in_progress", "completed", "failed"):
        [job] = terminal.parse_push(sim.webhook_event(sim.add_sync(status=status)))
        assert job.raw_state == status


async def test_a_failed_lookup_leaves_that_sync_unknown_and_the_poll_going(
        sim: TerminalSimulator, session: aiohttp.ClientSession) -> None:
    listed = sim.add_sync(status="in_progress")
    gone = sim.add_sync(status="completed")
    for _ in range(RECENT_LIMIT):  # newer syncs push it off the newest page
        sim.add_sync(status="completed")
    sim.fail_next(Fault.SERVER_ERROR, matching=f"/syncs/{gone}")
    result = await source(sim, session).poll([listed, gone, "sync_ELSEWHERE"])
    assert result.unknown == frozenset({gone})
    assert result.missing == frozenset({"sync_ELSEWHERE"})
    assert listed in {job.id for job in result.observations}


async def test_a_refused_lookup_is_the_sources_misconfiguration(
        sim: TerminalSimulator, session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.UNAUTHORIZED, matching="/syncs/sync_X")
    with pytest.raises(SourceMisconfigured):
        await source(sim, session).poll(["sync_X"])
