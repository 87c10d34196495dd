"""The jtl source against the JTL simulator: State 0..7, key casing, progress, tenant, 401/412."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import JtlSource
from bridge.errors import SourceMisconfigured, SourceUnavailable
from bridge.model import JobState
from bridge.simulators.base import Fault
from bridge.simulators.jtl import JtlSimulator
from bridge.sources import build_source
from bridge.sources.jtl import DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, STATE_NAMES, JtlWorkers

TENANT = "0b9f4a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
TOKEN = "jtl-static-bearer-token-42"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[JtlSimulator]:
    async with JtlSimulator(tenant_id=TENANT, token=TOKEN) as s:
        yield s


def source(sim: JtlSimulator, session: aiohttp.ClientSession, **extra: Any) -> JtlWorkers:
    data: dict[str, Any] = {
        "name": "jtl", "kind": "jtl", "base_url": sim.base_url, "tenant_id": TENANT,
        "timeout": "2s", "auth": {"type": "bearer", "token": TOKEN},
    }
    built = build_source(JtlSource.model_validate({**data, **extra}), session)
    assert isinstance(built, JtlWorkers)
    return built


@pytest.mark.parametrize(("raw", "state"), [
    (0, JobState.BLOCKED), (1, JobState.PENDING), (2, JobState.RUNNING),
    (3, JobState.SUCCEEDED), (4, JobState.FAILED), (5, JobState.RUNNING),
    (6, JobState.FAILED), (7, JobState.CANCELLED), (9, JobState.UNKNOWN),
])
async def test_state_numbers_map_to_canonical(sim: JtlSimulator, session: aiohttp.ClientSession,
                                              raw: int, state: JobState) -> None:
    sync_id = sim.add_sync(state=raw)
    result = await source(sim, session).poll([])
    [job] = result.observations
    # Mapped by number, shown by name (issue 15: people read "SleepingError", not "4").
    name = STATE_NAMES[raw][0] if raw < len(STATE_NAMES) else str(raw)
    assert (job.id, job.state, job.raw_state) == (sync_id, state, name)
    assert result.complete


async def test_states_table_overrides_by_number_text(sim: JtlSimulator,
                                                     session: aiohttp.ClientSession) -> None:
    sim.add_sync(state=5)
    [job] = (await source(sim, session, states={"5": "cancelled"}).poll([])).observations
    assert job.state is JobState.CANCELLED


async def test_lowercase_keys_are_read_too(session: aiohttp.ClientSession) -> None:
    async with JtlSimulator(tenant_id=TENANT, token=TOKEN, lowercase_keys=True) as sim:
        sync_id = sim.add_sync(state=2, progress=40, text="Synchronising")
        [job] = (await source(sim, session).poll([])).observations
        assert "state" in job.fields and "State" not in job.fields
        assert (job.id, job.state, job.progress, job.message) == (
            sync_id, JobState.RUNNING, 40.0, "Synchronising")


@pytest.mark.parametrize(("raw", "progress"), [(-1, None), (-0.5, None), (0, 0.0),
                                               (55.5, 55.5)])
async def test_negative_progress_means_none(sim: JtlSimulator, session: aiohttp.ClientSession,
                                            raw: float, progress: float | None) -> None:
    sim.add_sync(state=2, progress=raw)
    [job] = (await source(sim, session).poll([])).observations
    assert job.progress == progress


async def test_progress_text_is_the_message_and_dates_stay_in_fields(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_sync(state=4, text="eBay token expired")
    [job] = (await source(sim, session).poll([])).observations
    assert job.message == "eBay token expired"
    assert {"LastSync", "NextSync"} <= set(job.fields)


async def test_sends_tenant_and_app_headers(sim: JtlSimulator,
                                            session: aiohttp.ClientSession) -> None:
    await source(sim, session, app_id="Bridge/1.0", app_version="1.0", api_key="k-123456").poll([])
    headers = sim.requests[0].headers
    assert (headers["x-tenant-id"], headers["x-appid"], headers["x-appversion"],
            headers["x-api-key"]) == (TENANT, "Bridge/1.0", "1.0", "k-123456")


async def test_missing_tenant_header_is_misconfigured(sim: JtlSimulator,
                                                      session: aiohttp.ClientSession) -> None:
    with pytest.raises(SourceMisconfigured) as caught:
        await source(sim, session, tenant_id="").poll([])
    assert "HTTP 412" in str(caught.value)
    assert "tenant" in str(caught.value)
    assert "check tenant_id" in str(caught.value)


async def test_bad_token_is_misconfigured_and_secret_free(sim: JtlSimulator,
                                                          session: aiohttp.ClientSession) -> None:
    wrong = "jtl-wrong-token-0000"
    with pytest.raises(SourceMisconfigured) as caught:
        await source(sim, session, auth={"type": "bearer", "token": wrong}).poll([])
    assert "HTTP 401" in str(caught.value)
    assert "check the bearer token" in str(caught.value)
    assert wrong not in str(caught.value)


async def test_api_key_never_appears_in_errors(sim: JtlSimulator,
                                               session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.SERVER_ERROR)
    with pytest.raises(SourceUnavailable) as caught:
        await source(sim, session, api_key="jtl-api-key-secret").poll([])
    assert "jtl-api-key-secret" not in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_drift_names_the_field(sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.WRONG_SHAPE)
    with pytest.raises(SourceUnavailable, match="workers status response should be a list"):
        await source(sim, session).poll([])


async def test_state_of_the_wrong_type_is_drift(sim: JtlSimulator,
                                                session: aiohttp.ClientSession) -> None:
    sync_id = sim.add_sync()
    sim.set_sync(sync_id, State={"value": 3})
    with pytest.raises(SourceUnavailable, match=r"\[0\]\.State should be an integer"):
        await source(sim, session).poll([])


async def test_missing_identifier_is_drift(sim: JtlSimulator,
                                           session: aiohttp.ClientSession) -> None:
    sync_id = sim.add_sync()
    del sim.syncs[sync_id]["Identifier"]
    with pytest.raises(SourceUnavailable, match="identifier is missing"):
        await source(sim, session).poll([])


async def test_defaults_point_at_jtl_cloud(session: aiohttp.ClientSession) -> None:
    jtl = build_source(JtlSource.model_validate({
        "name": "jtl", "kind": "jtl", "tenant_id": TENANT,
        "auth": {"type": "oauth2", "client_id": "c", "client_secret": "s"}}), session)
    assert isinstance(jtl, JtlWorkers)
    assert jtl.client.base_url == DEFAULT_BASE_URL
    assert getattr(jtl.client.auth, "token_url", None) == DEFAULT_TOKEN_URL


async def test_a_sync_that_fails_restarts_and_fails_again_between_polls_is_two_failures(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    """Over a real socket into detection: the second failure shows only as a new LastSync."""
    from datetime import UTC, datetime, timedelta

    from bridge.detect import DetectSettings, detect
    from bridge.model import EventKind, TrackedJob

    sync_id = sim.add_sync(state=2, progress=40)
    jtl = source(sim, session)
    known: dict[str, TrackedJob] = {}
    failures = []
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    for step, changes in enumerate([
        {},
        {"State": 4, "LastSync": "2026-11-23T10:01:00Z", "ProgressText": "Amazon throttled"},
        # Between these two polls: restarted (1 -> 2) and failed again (4).
        {"State": 4, "LastSync": "2026-11-23T10:03:00Z", "ProgressText": "Amazon throttled"},
    ]):
        sim.set_sync(sync_id, **changes)
        result = detect(source="jtl", known=known, poll=await jtl.poll([]),
                        now=now + timedelta(minutes=step), settings=DetectSettings())
        known.update({j.id: j for j in result.upserts})
        failures += [e for e in result.events
                     if e.on is EventKind.TRANSITION and e.to_state is JobState.FAILED]
    assert [(e.job.run, e.job.message) for e in failures if e.job] == [
        (1, "Amazon throttled"), (2, "Amazon throttled")]


async def test_graphql_state_names_and_error_message(sim: JtlSimulator,
                                                     session: aiohttp.ClientSession) -> None:
    sync_id = sim.add_sync(state=3)
    sim.set_sync(sync_id, State="SLEEPING_ERROR_GESPERRT", errorMessage="Sync locked by admin")
    [job] = (await source(sim, session).poll([])).observations
    assert (job.state, job.raw_state, job.message) == (
        JobState.FAILED, "SLEEPING_ERROR_GESPERRT", "Sync locked by admin")


async def test_a_401_for_a_wrong_tenant_names_it_and_fetches_no_token_each_poll(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    # JTL answers 401, not 412, for a missing or unknown x-tenant-id (its error guide).
    sim.tenant_refusal = 401
    jtl = source(sim, session, tenant_id="wrong-tenant", auth={
        "type": "oauth2", "token_url": sim.token_url, "client_id": sim.client_id,
        "client_secret": sim.client_secret})
    for _ in range(3):
        with pytest.raises(SourceMisconfigured, match="tenant_id") as caught:
            await jtl.poll([])
        assert "client_secret" in str(caught.value)
    # One token, renewed once after the first 401; the fresh one refused too, so the 401
    # is not the token's and later polls do not fetch one again.
    assert sim.token_requests == 2
