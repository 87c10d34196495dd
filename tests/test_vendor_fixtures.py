"""Every body in tests/fixtures/vendors (copied from the vendors' public docs, each named in
SOURCES.md) through the parser that meets it in production: served over a real socket to
the real source, or handed to `parse_push` like a pushed webhook. So the parsers are
checked against what the vendors publish, not only against our own simulators.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.config.schema import EsalesSource, JtlSource, TerminalSource, ZendeskSource
from bridge.errors import SourceMisconfigured
from bridge.model import JobState
from bridge.sources.esales import EsalesImports
from bridge.sources.jtl import JtlWorkers
from bridge.sources.terminal import TerminalSyncs
from bridge.sources.zendesk import ZendeskJobs

FIXTURES = Path(__file__).parent / "fixtures" / "vendors"
# Every fixture file, each read by a test below: a new file must be added here (and a test).
RUN_HERE = frozenset({
    "terminal_list_sync_history.json", "terminal_get_sync_job_status.json",
    "terminal_sync_completed_event.json", "jtl_get_worker_status.json",
    "jtl_get_worker_status_v1.json", "jtl_rest_error.json", "esales_import_status_v3.json",
    "elevate_import_status_v3.json", "zendesk_show_job_status.json",
    "zendesk_bulk_create.json", "zendesk_permanent_deletion.json",
})


def fixture(name: str) -> Any:
    assert name in RUN_HERE, f"add {name} to RUN_HERE"
    return json.loads((FIXTURES / name).read_text())


class VendorServer:
    """Answers each path with a fixture body (a cursor-paged list: page 1 only)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> VendorServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if "cursor" in request.query:
            return web.json_response({"results": [], "next": None})
        status, body = self.routes.get(request.path, (404, {"error": "not in this test"}))
        return web.json_response(body, status=status)


@pytest.fixture
async def server() -> AsyncIterator[VendorServer]:
    async with VendorServer() as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def terminal(base: str, session: aiohttp.ClientSession) -> TerminalSyncs:
    return TerminalSyncs(TerminalSource.model_validate({
        "name": "terminal", "kind": "terminal", "base_url": base, "connection_token": "c",
        "auth": {"type": "bearer", "token": "k"}}), session)


def zendesk(base: str, session: aiohttp.ClientSession | None = None) -> ZendeskJobs:
    return ZendeskJobs(ZendeskSource.model_validate({
        "name": "zd", "kind": "zendesk", "base_url": base,
        "auth": {"type": "bearer", "token": "t"}}), session)  # type: ignore[arg-type]


def jtl(base: str, session: aiohttp.ClientSession) -> JtlWorkers:
    return JtlWorkers(JtlSource.model_validate({
        "name": "jtl", "kind": "jtl", "base_url": base, "tenant_id": "t",
        "auth": {"type": "bearer", "token": "k"}}), session)


def esales(base: str, session: aiohttp.ClientSession) -> EsalesImports:
    return EsalesImports(EsalesSource.model_validate({
        "name": "esales", "kind": "esales", "base_url": base, "api_key": "k"}), session)


# --- Terminal -----------------------------------------------------------------------------


async def test_terminal_list_sync_history(server: VendorServer,
                                          session: aiohttp.ClientSession) -> None:
    server.routes["/syncs"] = (200, fixture("terminal_list_sync_history.json"))
    result = await terminal(server.url, session).poll([])
    [job] = result.observations
    assert (job.id, job.state, job.raw_state) == (
        "sync_01GV12VR4DJP70GD1ZBK0SDWFH", JobState.SUCCEEDED, "completed")
    assert job.message == "Reason for failure if sync status is 'failed'"


async def test_terminal_get_sync_job_status(server: VendorServer,
                                            session: aiohttp.ClientSession) -> None:
    body = fixture("terminal_get_sync_job_status.json")
    server.routes["/syncs"] = (200, {"results": [], "next": None})
    server.routes[f"/syncs/{body['id']}"] = (200, body)
    result = await terminal(server.url, session).poll([body["id"]])
    [job] = result.observations
    assert (job.id, job.state, job.progress) == (body["id"], JobState.SUCCEEDED, 85.0)
    assert job.fields["attempts"] == 1


def test_terminal_sync_completed_event() -> None:
    [job] = terminal("http://x", None).parse_push(  # type: ignore[arg-type]
        fixture("terminal_sync_completed_event.json"))
    assert (job.id, job.state) == ("sync_01GV12VR4DJP70GD1ZBK0SDWFH", JobState.SUCCEEDED)


# --- JTL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "last_sync", "progress"), [
    ("jtl_get_worker_status.json", "2023-02-01T12:45:00.0000000+00:00", 0.0),
    ("jtl_get_worker_status_v1.json", "2023-11-07T05:31:56Z", 100.0),
])
async def test_jtl_get_worker_status(server: VendorServer, session: aiohttp.ClientSession,
                                     name: str, last_sync: str, progress: float) -> None:
    server.routes["/v1/workers/status"] = (200, fixture(name))
    [job] = (await jtl(server.url, session).poll([])).observations
    assert (job.id, job.state, job.raw_state) == (
        "3c90c3cc-0d44-4b50-8888-8dd25736052a", JobState.BLOCKED, "Suspended")
    # Progress 123 in the v1.3 example: clamped to 100.
    assert job.progress == progress
    assert job.run_key == last_sync
    assert job.due_at is not None and job.due_at.tzinfo is not None
    assert job.due_at.astimezone(UTC) == datetime.fromisoformat(last_sync).astimezone(UTC)


async def test_jtl_rest_error_says_what_jtl_said(server: VendorServer,
                                                 session: aiohttp.ClientSession) -> None:
    server.routes["/v1/workers/status"] = (400, fixture("jtl_rest_error.json"))
    with pytest.raises(SourceMisconfigured, match="One or more validation errors occurred"):
        await jtl(server.url, session).poll([])


# --- eSales / Elevate ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("esales_import_status_v3.json", "string"),
    # The current docs: the id as a JSON number, `reason: null` (no message).
    ("elevate_import_status_v3.json", None),
])
async def test_esales_import_status(server: VendorServer, session: aiohttp.ClientSession,
                                    name: str, message: str | None) -> None:
    server.routes["/api/admin/v3/import/status"] = (200, fixture(name))
    [job] = (await esales(server.url, session).poll(["5537431447739019570"])).observations
    assert (job.id, job.state, job.message) == (
        "5537431447739019570", JobState.RUNNING, message)


def test_elevate_push_keeps_the_numeric_id_exact() -> None:
    [job] = esales("http://x", None).parse_push(  # type: ignore[arg-type]
        fixture("elevate_import_status_v3.json"))
    assert job.id == "5537431447739019570"


# --- Zendesk ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "state", "failed"), [
    ("zendesk_show_job_status.json", JobState.SUCCEEDED, 0),
    ("zendesk_bulk_create.json", JobState.SUCCEEDED, 0),
    # `results` as one object: {"success": true} is no failed item.
    ("zendesk_permanent_deletion.json", JobState.SUCCEEDED, 0),
])
def test_zendesk_job_status_bodies(name: str, state: JobState, failed: int) -> None:
    [job] = zendesk("http://x").parse_push(fixture(name))
    assert (job.state, job.failed_items) == (state, failed)


async def test_zendesk_show_job_status_through_show_many(
        server: VendorServer, session: aiohttp.ClientSession) -> None:
    one = fixture("zendesk_show_job_status.json")["job_status"]
    server.routes["/api/v2/job_statuses.json"] = (200, {"job_statuses": []})
    server.routes["/api/v2/job_statuses/show_many.json"] = (200, {"job_statuses": [one]})
    result = await zendesk(server.url, session).poll([one["id"]])
    [job] = result.observations
    assert (job.id, job.progress, job.failed_items) == (one["id"], 100.0, 0)


# --- every file is run ----------------------------------------------------------------------


def test_every_fixture_file_is_run_through_a_parser_and_named_in_sources_md() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == RUN_HERE
    sources = (FIXTURES / "SOURCES.md").read_text()
    assert [name for name in sorted(RUN_HERE) if f"`{name}`" not in sources] == []
