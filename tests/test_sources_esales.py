"""The esales source against the eSales simulator: per-id polls, string ids, NOT_FOUND vs 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import EsalesSource
from bridge.errors import SourceMisconfigured, SourceUnavailable
from bridge.model import JobState
from bridge.simulators.base import Fault
from bridge.simulators.esales import EsalesSimulator
from bridge.sources import build_source
from bridge.sources.esales import EsalesImports
from tests.pacing_support import FakeTime

API_KEY = "pkA123456789AB1BE-secret"
IMPORT_ID = "5537431447739019570"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[EsalesSimulator]:
    async with EsalesSimulator(api_key=API_KEY) as s:
        yield s


def source(sim: EsalesSimulator, session: aiohttp.ClientSession, *,
           time: FakeTime | None = None, **extra: Any) -> EsalesImports:
    data = {"name": "esales", "kind": "esales", "base_url": sim.base_url, "api_key": API_KEY,
            "timeout": "2s"}
    config = EsalesSource.model_validate({**data, **extra})
    if time is not None:
        return EsalesImports(config, session, clock=time.clock, sleep=time.sleep)
    built = build_source(config, session)
    assert isinstance(built, EsalesImports)
    return built


def test_esales_cannot_list_jobs() -> None:
    assert EsalesImports.lists_jobs is False


@pytest.mark.parametrize(("raw", "state"), [
    ("WAITING", JobState.PENDING), ("BLOCKED", JobState.BLOCKED),
    ("IN_PROGRESS", JobState.RUNNING), ("SUCCESS", JobState.SUCCEEDED),
    ("FAILURE", JobState.FAILED), ("ABORTED", JobState.CANCELLED),
    ("PAUSED", JobState.UNKNOWN),
])
async def test_raw_states_map_to_canonical(sim: EsalesSimulator, session: aiohttp.ClientSession,
                                           raw: str, state: JobState) -> None:
    sim.add_import(IMPORT_ID, status=raw)
    [job] = (await source(sim, session).poll([IMPORT_ID])).observations
    assert (job.id, job.state, job.raw_state) == (IMPORT_ID, state, raw)


async def test_polls_each_id_with_the_api_key(sim: EsalesSimulator,
                                              session: aiohttp.ClientSession) -> None:
    first, second = sim.add_import(), sim.add_import()
    result = await source(sim, session).poll([first, second])
    assert {job.id for job in result.observations} == {first, second}
    assert not result.complete
    assert sorted(r.query["id"] for r in sim.requests) == sorted([first, second])
    assert all(r.headers["Api-Key"] == API_KEY for r in sim.requests)


async def test_no_ids_means_no_requests(sim: EsalesSimulator,
                                        session: aiohttp.ClientSession) -> None:
    result = await source(sim, session).poll([])
    assert result.observations == [] and sim.request_count() == 0


async def test_numeric_19_digit_id_stays_an_exact_string(session: aiohttp.ClientSession) -> None:
    async with EsalesSimulator(api_key=API_KEY, numeric_ids=True) as sim:
        big = "9007199254740993123"  # beyond float precision: float() would change it
        sim.add_import(big, status="IN_PROGRESS")
        [job] = (await source(sim, session).poll([big])).observations
        assert job.id == big
        assert str(job.fields["id"]) == big


async def test_reason_is_the_message(sim: EsalesSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_import(IMPORT_ID, status="FAILURE", reason="Row 12: unknown attribute")
    [job] = (await source(sim, session).poll([IMPORT_ID])).observations
    assert job.message == "Row 12: unknown attribute"


async def test_not_found_status_is_missing(sim: EsalesSimulator,
                                           session: aiohttp.ClientSession) -> None:
    known = sim.add_import(status="WAITING")
    result = await source(sim, session).poll([known, IMPORT_ID])
    assert result.missing == frozenset({IMPORT_ID})
    assert [job.id for job in result.observations] == [known]


async def test_http_404_is_a_wrong_cluster_not_a_missing_job(
        sim: EsalesSimulator, session: aiohttp.ClientSession) -> None:
    sim.cluster_found = False
    with pytest.raises(SourceMisconfigured) as caught:
        await source(sim, session).poll([IMPORT_ID])
    assert str(caught.value).startswith("cluster not found: check base_url")


async def test_wrong_api_key_is_misconfigured_without_the_key(
        sim: EsalesSimulator, session: aiohttp.ClientSession) -> None:
    wrong = "pkWRONGWRONGWRONG"
    with pytest.raises(SourceMisconfigured, match="check api_key") as caught:
        await source(sim, session, api_key=wrong).poll([IMPORT_ID])
    assert wrong not in str(caught.value)


@pytest.mark.parametrize(("fault", "error"), [
    (Fault.SERVER_ERROR, SourceUnavailable), (Fault.RATE_LIMITED, SourceUnavailable),
    (Fault.MALFORMED_JSON, SourceUnavailable), (Fault.HTML_ERROR, SourceUnavailable),
    (Fault.UNAUTHORIZED, SourceMisconfigured), (Fault.WRONG_SHAPE, SourceUnavailable),
])
async def test_faults_are_classified_and_keep_the_key_out(
        sim: EsalesSimulator, session: aiohttp.ClientSession, fault: Fault,
        error: type[Exception]) -> None:
    sim.add_import(IMPORT_ID)
    # A 429 is waited out and retried: only the third in a row fails the lookup.
    sim.fail_next(fault, times=3 if fault is Fault.RATE_LIMITED else 1)
    with pytest.raises(error) as caught:
        await source(sim, session, time=FakeTime()).poll([IMPORT_ID])
    assert API_KEY not in str(caught.value)


async def test_drifted_status_names_the_field(sim: EsalesSimulator,
                                              session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.WRONG_SHAPE)
    with pytest.raises(SourceUnavailable, match=r"import status response\.status is missing"):
        await source(sim, session).poll([IMPORT_ID])


async def test_the_api_version_is_the_paths(sim: EsalesSimulator,
                                            session: aiohttp.ClientSession) -> None:
    sim.add_import(IMPORT_ID, status="IN_PROGRESS")
    await source(sim, session).poll([IMPORT_ID])
    assert sim.requests[-1].path == "/api/admin/v3/import/status"
    with pytest.raises(SourceMisconfigured):
        # The simulator serves v3 only: another version is a 404 there.
        await source(sim, session, api_version="v4").poll([IMPORT_ID])
    assert sim.requests[-1].path == "/api/admin/v4/import/status"


async def test_the_404_hint_names_both_host_forms(sim: EsalesSimulator,
                                                  session: aiohttp.ClientSession) -> None:
    sim.cluster_found = False
    with pytest.raises(SourceMisconfigured) as caught:
        await source(sim, session).poll([IMPORT_ID])
    assert "{cluster-id}.elevate-api.cloud" in str(caught.value)
    assert "{cluster-id}.api.esales.apptus.cloud" in str(caught.value)


@pytest.mark.parametrize("host", ["https://c1.elevate-api.cloud",
                                  "https://c1.api.esales.apptus.cloud"])
def test_either_host_form_is_a_valid_base_url(host: str) -> None:
    config = EsalesSource.model_validate({"name": "e", "kind": "esales", "base_url": host,
                                          "api_key": "k"})
    assert config.base_url == host


async def test_reason_null_is_no_message_and_numeric_ids_stay_exact(
        session: aiohttp.ClientSession) -> None:
    async with EsalesSimulator(api_key=API_KEY, numeric_ids=True) as sim:
        sim.add_import(IMPORT_ID, status="IN_PROGRESS", reason=None)
        [job] = (await source(sim, session).poll([IMPORT_ID])).observations
        assert (job.id, job.message) == (IMPORT_ID, None)


async def test_one_failed_lookup_of_several_leaves_only_that_import_unknown(
        sim: EsalesSimulator, session: aiohttp.ClientSession) -> None:
    other = "5537431447739019571"
    sim.add_import(IMPORT_ID, status="IN_PROGRESS")
    sim.add_import(other, status="SUCCESS")
    sim.fail_next(Fault.SERVER_ERROR, matching=f"id={IMPORT_ID}")
    result = await source(sim, session).poll([IMPORT_ID, other])
    assert result.unknown == frozenset({IMPORT_ID})
    assert [job.id for job in result.observations] == [other]
