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


def source(sim: EsalesSimulator, session: aiohttp.ClientSession, **extra: Any) -> EsalesImports:
    data = {"name": "esales", "kind": "esales", "base_url": sim.base_url, "api_key": API_KEY,
            "timeout": "2s"}
    built = build_source(EsalesSource.model_validate({**data, **extra}), session)
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
    sim.fail_next(fault)
    with pytest.raises(error) as caught:
        await source(sim, session).poll([IMPORT_ID])
    assert API_KEY not in str(caught.value)


async def test_drifted_status_names_the_field(sim: EsalesSimulator,
                                              session: aiohttp.ClientSession) -> None:
    sim.fail_next(Fault.WRONG_SHAPE)
    with pytest.raises(SourceUnavailable, match=r"import status response\.status is missing"):
        await source(sim, session).poll([IMPORT_ID])
