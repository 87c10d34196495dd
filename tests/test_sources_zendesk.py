"""The zendesk source against the Zendesk simulator: states, pages, lookups, progress, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import ZendeskSource
from bridge.errors import SourceMisconfigured, SourceUnavailable
from bridge.model import JobState
from bridge.simulators.base import Fault
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.sources import build_source
from bridge.sources.zendesk import ZendeskJobs
from tests.pacing_support import FakeTime

EMAIL = "ops@example.com"
TOKEN = "zd-secret-api-token-123"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN, bearer_token="zd-oauth-token"
                                ) as s:
        yield s


def config(sim: ZendeskSimulator, **extra: Any) -> ZendeskSource:
    data: dict[str, Any] = {
        "name": "zd", "kind": "zendesk", "base_url": sim.base_url, "timeout": "2s",
        "auth": {"type": "basic", "username": f"{EMAIL}/token", "password": TOKEN},
    }
    return ZendeskSource.model_validate({**data, **extra})


def source(sim: ZendeskSimulator, session: aiohttp.ClientSession, *,
           time: FakeTime | None = None, **extra: Any) -> ZendeskJobs:
    if time is not None:
        return ZendeskJobs(config(sim, **extra), session, clock=time.clock, sleep=time.sleep)
    built = build_source(config(sim, **extra), session)
    assert isinstance(built, ZendeskJobs)
    return built


@pytest.mark.parametrize(("raw", "state"), [
    ("queued", JobState.PENDING), ("working", JobState.RUNNING),
    ("completed", JobState.SUCCEEDED), ("failed", JobState.FAILED),
    ("killed", JobState.CANCELLED), ("paused", JobState.UNKNOWN),
])
async def test_raw_states_map_to_canonical(sim: ZendeskSimulator, session: aiohttp.ClientSession,
                                           raw: str, state: JobState) -> None:
    job_id = sim.add_job(status=raw)
    result = await source(sim, session).poll([])
    [job] = result.observations
    assert (job.id, job.state, job.raw_state) == (job_id, state, raw)


async def test_states_table_overrides_the_default_mapping(
        sim: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_job(status="killed")
    result = await source(sim, session, states={"killed": "failed"}).poll([])
    assert result.observations[0].state is JobState.FAILED


async def test_unmapped_state_warns_once_per_value(
        sim: ZendeskSimulator, session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    sim.add_job(status="paused")
    sim.add_job(status="paused")
    zd = source(sim, session)
    await zd.poll([])
    await zd.poll([])
    warnings = [r for r in caplog.records if "paused" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"


async def test_list_follows_every_cursor_page(sim: ZendeskSimulator,
                                              session: aiohttp.ClientSession) -> None:
    sim.page_size = 2
    ids = {sim.add_job(status="working") for _ in range(5)}
    result = await source(sim, session).poll([])
    assert {job.id for job in result.observations} == ids
    assert result.complete
    assert sim.request_count("/job_statuses.json") == 3


async def test_list_asks_for_pages_of_100(sim: ZendeskSimulator,
                                          session: aiohttp.ClientSession) -> None:
    await source(sim, session).poll([])
    assert sim.requests[0].query["page[size]"] == "100"


async def test_tracked_id_missing_from_list_is_looked_up(
        sim: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    sim.list_limit = 1
    old = sim.add_job(status="working", total=10, progress=3)
    sim.add_job(status="queued")
    result = await source(sim, session).poll([old])
    assert old in {job.id for job in result.observations}
    [lookup] = [r for r in sim.requests if r.path.endswith("/show_many.json")]
    assert lookup.query["ids"] == old
    assert sim.request_count(f"/job_statuses/{old}.json") == 0
    assert not result.missing


async def test_expired_job_is_missing(sim: ZendeskSimulator,
                                      session: aiohttp.ClientSession) -> None:
    gone = sim.add_job(status="working")
    sim.expire(gone)
    result = await source(sim, session).poll([gone])
    assert result.missing == frozenset({gone})
    assert result.observations == []


async def test_unfinished_job_pushed_off_the_list_is_still_followed(
        sim: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    sim.list_limit = 1
    zd = source(sim, session)
    first = sim.add_job(status="working")
    await zd.poll([])
    sim.add_job(status="queued")
    result = await zd.poll([])
    assert first in {job.id for job in result.observations}


@pytest.mark.parametrize(("done", "total", "percent"), [
    (3, 12, 25.0), (0, 4, 0.0), (2, 2, 100.0), (None, 10, None), (1, None, None),
    (None, None, None), (0, 0, None),
])
async def test_progress_count_is_normalised_to_percent(
        sim: ZendeskSimulator, session: aiohttp.ClientSession,
        done: int | None, total: int | None, percent: float | None) -> None:
    sim.add_job(status="working", progress=done, total=total)
    [job] = (await source(sim, session).poll([])).observations
    assert job.progress == percent


async def test_completed_job_counts_failed_items(sim: ZendeskSimulator,
                                                 session: aiohttp.ClientSession) -> None:
    results: list[dict[str, Any]] = [
        {"id": 1, "success": True, "status": "Updated", "errors": ""},
        {"id": 2, "status": "Failed"},
        {"id": 3, "success": False},
        {"id": 4, "error": "TicketLocked"},
        {"id": 5, "errors": "Ticket is closed"},
    ]
    sim.add_job(status="completed", total=5, progress=5, results=results)
    [job] = (await source(sim, session).poll([])).observations
    assert job.state is JobState.SUCCEEDED
    assert job.failed_items == 4


async def test_job_carries_message_url_and_raw_fields(sim: ZendeskSimulator,
                                                      session: aiohttp.ClientSession) -> None:
    job_id = sim.add_job(status="failed", message="Printer on fire")
    [job] = (await source(sim, session).poll([])).observations
    assert job.message == "Printer on fire"
    assert job.url == f"{sim.origin}/api/v2/job_statuses/{job_id}.json"
    assert job.fields["status"] == "failed"
    assert job.run == 1


async def test_bearer_auth_is_accepted(sim: ZendeskSimulator,
                                       session: aiohttp.ClientSession) -> None:
    sim.add_job()
    zd = source(sim, session, auth={"type": "bearer", "token": "zd-oauth-token"})
    assert len((await zd.poll([])).observations) == 1


async def test_wrong_token_is_misconfigured_without_the_token(
        sim: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    wrong = "not-the-right-token-xyz"
    zd = source(sim, session, auth={"type": "basic", "username": f"{EMAIL}/token",
                                    "password": wrong})
    with pytest.raises(SourceMisconfigured) as caught:
        await zd.poll([])
    assert "check the username" in str(caught.value)
    assert "Couldn't authenticate you" in str(caught.value)
    assert wrong not in str(caught.value)


@pytest.mark.parametrize(("fault", "error", "phrase", "retry_after"), [
    (Fault.SERVER_ERROR, SourceUnavailable, "HTTP 500", None),
    (Fault.RATE_LIMITED, SourceUnavailable, "rate limited", 1.0),
    (Fault.MALFORMED_JSON, SourceUnavailable, "malformed JSON", None),
    (Fault.HTML_ERROR, SourceUnavailable, "expected JSON, got text/html", None),
    (Fault.UNAUTHORIZED, SourceMisconfigured, "check the", None),
    (Fault.WRONG_SHAPE, SourceUnavailable, "job_statuses should be a list, got null", None),
])
async def test_fault_is_classified_with_a_readable_secret_free_message(
        sim: ZendeskSimulator, session: aiohttp.ClientSession, fault: Fault,
        error: type[Exception], phrase: str, retry_after: float | None) -> None:
    sim.add_job()
    # A 429 is waited out and retried: only the third in a row fails the poll.
    sim.fail_next(fault, times=3 if fault is Fault.RATE_LIMITED else 1)
    with pytest.raises(error) as caught:
        await source(sim, session, time=FakeTime()).poll([])
    message = str(caught.value)
    assert phrase in message
    assert TOKEN not in message
    assert getattr(caught.value, "retry_after", None) == retry_after


async def test_slow_answer_times_out(sim: ZendeskSimulator,
                                     session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.SLOW, delay=5)
    with pytest.raises(SourceUnavailable, match=r"no answer within 0\.2s"):
        await source(sim, session, timeout="200ms").poll([])


async def test_failure_on_a_later_page_fails_the_whole_poll(
        sim: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    sim.page_size = 1
    sim.add_job()
    sim.add_job()
    zd = source(sim, session)
    await zd.poll([])
    sim.fail_next(Fault.SERVER_ERROR)
    sim.fail_next(Fault.SERVER_ERROR)
    with pytest.raises(SourceUnavailable):
        await zd.poll([])


def test_push_body_is_parsed_like_a_poll() -> None:
    zd = ZendeskJobs(ZendeskSource(name="zd", kind="zendesk", base_url="http://x"),
                     session=None)  # type: ignore[arg-type]
    [job] = zd.parse_push({"job_status": {"id": "8b72", "status": "working", "total": 4,
                                          "progress": 1}})
    assert (job.id, job.state, job.progress) == ("8b72", JobState.RUNNING, 25.0)


@pytest.mark.parametrize(("results", "failed"), [
    ({"success": False}, 1), ({"success": True}, 0), (None, None),
    ([{"id": 1, "index": 0, "error": "TicketUpdateFailed", "details": "Ticket is closed"},
      {"id": 2, "index": 1, "success": True}], 1),
])
async def test_results_as_an_object_or_a_list_count_failed_items(
        sim: ZendeskSimulator, session: aiohttp.ClientSession, results: Any,
        failed: int | None) -> None:
    sim.add_job(status="completed", results=results)
    [job] = (await source(sim, session).poll([])).observations
    assert job.failed_items == failed
