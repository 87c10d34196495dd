"""The seed-API simulators: faults on the wire, auth like the real APIs, demo lifecycles, world."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bridge.config.schema import EsalesSource, JtlSource, TerminalSource, ZendeskSource
from bridge.model import JobState
from bridge.simulators.base import Fault, Simulator
from bridge.simulators.esales import EsalesSimulator
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.terminal import TerminalSimulator
from bridge.simulators.world import DemoWorld
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.sources import build_source

TICKS = 80


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email="a@b.c", api_token="tok") as sim:
        yield sim


ZD_AUTH = aiohttp.encode_basic_auth("a@b.c/token", "tok")


async def get(session: aiohttp.ClientSession, url: str, **headers: str
              ) -> tuple[int, str, dict[str, str]]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `condition()` holds, polling briefly; fail after `within` seconds."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


# --- faults and the request log ---------------------------------------------------------


async def test_rate_limit_fault_sends_retry_after(zendesk: ZendeskSimulator,
                                                  session: aiohttp.ClientSession) -> None:
    zendesk.fail_next(Fault.RATE_LIMITED, retry_after="0.62")
    status, _, headers = await get(session, f"{zendesk.base_url}/api/v2/job_statuses.json",
                                   Authorization=ZD_AUTH)
    assert (status, headers["Retry-After"]) == (429, "0.62")


async def test_faults_are_used_in_order_then_normal_answers_resume(
        zendesk: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    zendesk.fail_next(Fault.SERVER_ERROR, times=2)
    zendesk.fail_next(Fault.HTML_ERROR)
    url = f"{zendesk.base_url}/api/v2/job_statuses.json"
    answers = [await get(session, url, Authorization=ZD_AUTH) for _ in range(4)]
    assert [a[0] for a in answers] == [500, 500, 200, 200]
    assert answers[2][2]["Content-Type"].startswith("text/html")
    assert json.loads(answers[3][1])["job_statuses"] == []
    assert [r.fault for r in zendesk.requests] == [Fault.SERVER_ERROR, Fault.SERVER_ERROR,
                                                   Fault.HTML_ERROR, None]


async def test_malformed_json_fault_does_not_parse(zendesk: ZendeskSimulator,
                                                   session: aiohttp.ClientSession) -> None:
    zendesk.fail_next(Fault.MALFORMED_JSON)
    _, text, headers = await get(session, f"{zendesk.base_url}/api/v2/job_statuses.json")
    assert headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(text)


async def test_slow_fault_answers_normally_after_the_delay(
        zendesk: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    zendesk.fail_next(Fault.SLOW, delay=0.05)
    status, _, _ = await get(session, f"{zendesk.base_url}/api/v2/job_statuses.json",
                             Authorization=ZD_AUTH)
    assert status == 200


async def test_stop_cuts_a_slow_answer_short(session: aiohttp.ClientSession) -> None:
    sim = ZendeskSimulator()
    url = f"{await sim.start()}/api/v2/job_statuses.json"
    sim.fail_next(Fault.SLOW, delay=60)
    pending = asyncio.ensure_future(get(session, url))
    await eventually(lambda: bool(sim.requests))
    await asyncio.wait_for(sim.stop(), 5)
    await asyncio.gather(pending, return_exceptions=True)


async def test_request_count_by_path(zendesk: ZendeskSimulator,
                                     session: aiohttp.ClientSession) -> None:
    job = zendesk.add_job()
    await get(session, f"{zendesk.base_url}/api/v2/job_statuses/{job}.json",
              Authorization=ZD_AUTH)
    await get(session, f"{zendesk.base_url}/api/v2/job_statuses.json", Authorization=ZD_AUTH)
    assert zendesk.request_count() == 2
    assert zendesk.request_count(f"/{job}.json") == 1


# --- auth and shapes like the real APIs -----------------------------------------------


async def test_zendesk_rejects_bad_credentials_and_reports_expired_jobs(
        zendesk: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    job = zendesk.add_job()
    status, text, _ = await get(session, f"{zendesk.base_url}/api/v2/job_statuses.json",
                                Authorization=aiohttp.encode_basic_auth("a@b.c/token", "no"))
    assert (status, json.loads(text)) == (401, {"error": "Couldn't authenticate you"})
    zendesk.expire(job)
    status, text, _ = await get(session, f"{zendesk.base_url}/api/v2/job_statuses/{job}.json",
                                Authorization=ZD_AUTH)
    assert (status, json.loads(text)["error"]) == (404, "RecordNotFound")


async def test_zendesk_pages_link_to_the_next_page(zendesk: ZendeskSimulator,
                                                   session: aiohttp.ClientSession) -> None:
    zendesk.page_size = 1
    zendesk.add_job()
    zendesk.add_job()
    _, text, _ = await get(session, f"{zendesk.base_url}/api/v2/job_statuses.json",
                           Authorization=ZD_AUTH)
    first = json.loads(text)
    assert first["meta"]["has_more"] is True
    _, text, _ = await get(session, first["links"]["next"], Authorization=ZD_AUTH)
    second = json.loads(text)
    assert second["meta"]["has_more"] is False
    assert first["job_statuses"][0]["id"] != second["job_statuses"][0]["id"]


async def test_jtl_wants_a_tenant_header(session: aiohttp.ClientSession) -> None:
    async with JtlSimulator(token="t") as jtl:
        url = f"{jtl.base_url}/v1/workers/status"
        status, _, _ = await get(session, url, Authorization="Bearer t", **{
            "x-appid": "a", "x-appversion": "1"})
        assert status == 412
        status, _, _ = await get(session, url, Authorization="Bearer nope", **{
            "x-tenant-id": jtl.tenant_id, "x-appid": "a", "x-appversion": "1"})
        assert status == 401


async def test_jtl_tokens_expire_after_their_ttl(session: aiohttp.ClientSession) -> None:
    now = [0.0]
    async with JtlSimulator(token_ttl=5, clock=lambda: now[0]) as jtl:
        async with session.post(jtl.token_url, data={"grant_type": "client_credentials"},
                                headers={"Authorization": aiohttp.encode_basic_auth(
                                    jtl.client_id, jtl.client_secret)}) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "x-tenant-id": jtl.tenant_id,
                   "x-appid": "a", "x-appversion": "1"}
        url = f"{jtl.base_url}/v1/workers/status"
        assert (await get(session, url, **headers))[0] == 200
        now[0] = 6.0
        assert (await get(session, url, **headers))[0] == 401
        assert jtl.token_requests == 1


async def test_esales_unknown_id_is_not_found_with_status_200(
        session: aiohttp.ClientSession) -> None:
    async with EsalesSimulator(api_key="k") as esales:
        status, text, _ = await get(
            session, f"{esales.base_url}/api/admin/v3/import/status?id=123", **{"Api-Key": "k"})
        assert (status, json.loads(text)) == (200, {"id": "123", "status": "NOT_FOUND"})


async def test_terminal_needs_the_connection_token(session: aiohttp.ClientSession) -> None:
    async with TerminalSimulator(api_key="k", connection_token="c") as terminal:
        status, text, _ = await get(session, f"{terminal.base_url}/syncs",
                                    Authorization="Bearer k")
        assert status == 401
        # Terminal's errors are flat: {code, message, detail}.
        body = json.loads(text)
        assert body["code"] == "unauthorized"
        assert "Connection-Token" in body["message"]


# --- demo lifecycles ----------------------------------------------------------------------


def history(sim: Simulator, snapshot: Callable[[], Any], ticks: int = TICKS) -> list[Any]:
    states = []
    for _ in range(ticks):
        sim.tick()
        states.append(snapshot())
    return states


def zendesk_snapshot(sim: ZendeskSimulator) -> Callable[[], Any]:
    return lambda: {k: (j["status"], j["progress"]) for k, j in sim.jobs.items()}


def terminal_snapshot(sim: TerminalSimulator) -> Callable[[], Any]:
    return lambda: {k: (s["status"], s.get("progress"), s["attempts"])
                    for k, s in sim.syncs.items()}


def jtl_snapshot(sim: JtlSimulator) -> Callable[[], Any]:
    return lambda: {k: (s["State"], s["Progress"], s["ProgressText"])
                    for k, s in sim.syncs.items()}


def esales_snapshot(sim: EsalesSimulator) -> Callable[[], Any]:
    return lambda: {k: (i["status"], i["reason"]) for k, i in sim.imports.items()}


def built_jtl(seed: int) -> JtlSimulator:
    sim = JtlSimulator(seed=seed)
    sim.plan_demo()
    return sim


def built_esales(seed: int) -> EsalesSimulator:
    sim = EsalesSimulator(seed=seed)
    sim.plan_demo()
    return sim


@pytest.mark.parametrize(("make", "snapshot"), [
    (lambda seed: ZendeskSimulator(seed=seed), zendesk_snapshot),
    (lambda seed: TerminalSimulator(seed=seed), terminal_snapshot),
    (built_jtl, jtl_snapshot),
    (built_esales, esales_snapshot),
], ids=["zendesk", "terminal", "jtl", "esales"])
def test_demo_is_deterministic_given_a_seed(make: Callable[[int], Any],
                                            snapshot: Callable[[Any], Any]) -> None:
    first, second, other = make(3), make(3), make(4)
    run = history(first, snapshot(first))
    assert run == history(second, snapshot(second))
    assert run != history(other, snapshot(other))


def test_zendesk_demo_completes_with_failed_items_fails_and_expires() -> None:
    sim = ZendeskSimulator(seed=1)
    seen: dict[str, set[str]] = {}
    partial = False
    for _ in range(TICKS):
        sim.tick()
        for job_id, job in sim.jobs.items():
            seen.setdefault(job_id, set()).add(job["status"])
            partial |= job["status"] == "working" and 0 < (job["progress"] or 0) < job["total"]
    assert partial, "progress moves through the tasks"
    expired = [j for j, states in seen.items() if j not in sim.jobs and "working" in states]
    assert expired, "a job expires while working"
    finals = list(sim.jobs.values())
    assert any(j["status"] == "failed" and j["message"] for j in finals)
    assert any(j["status"] == "completed" and any(r["status"] == "Failed" for r in j["results"])
               for j in finals)


def test_terminal_demo_stalls_one_sync_and_retries_a_failed_one() -> None:
    sim = TerminalSimulator(seed=1)
    retried = set()
    for _ in range(TICKS):
        sim.tick()
        retried |= {s for s, sync in sim.syncs.items() if sync["status"] == "failed"}
    stalled = [s for s in sim.syncs.values()
               if s["status"] == "in_progress" and s.get("progress") == 62.0]
    assert len(stalled) == 1
    assert any(sim.syncs[s]["status"] == "completed" and sim.syncs[s]["attempts"] == 2
               for s in retried if s in sim.syncs)


def test_jtl_demo_syncs_recur_and_sometimes_sleep_on_an_error() -> None:
    sim = built_jtl(seed=1)
    states: dict[str, list[int]] = {}
    errors = set()
    for _ in range(TICKS):
        sim.tick()
        for sync_id, sync in sim.syncs.items():
            states.setdefault(sync_id, []).append(sync["State"])
            if sync["State"] == 4:
                errors.add(sync["ProgressText"])
    recurring = [s for s in states.values() if _runs(s) >= 2]
    assert recurring, "a sync goes 3 -> running -> 3 more than once"
    assert errors
    assert any(set(s) == {7} for s in states.values())


def _runs(states: list[int]) -> int:
    return sum(1 for a, b in itertools.pairwise(states) if a != 2 and b == 2)


def test_esales_demo_imports_run_to_their_fates() -> None:
    sim = EsalesSimulator(seed=1)
    ids = sim.plan_demo()
    seen: dict[str, list[str]] = {i: [] for i in ids}
    for _ in range(TICKS):
        sim.tick()
        for import_id in ids:
            status = sim.imports[import_id]["status"]
            if not seen[import_id] or seen[import_id][-1] != status:
                seen[import_id].append(status)
    assert seen[ids[0]] == ["WAITING", "IN_PROGRESS", "SUCCESS"]
    assert seen[ids[1]] == ["WAITING", "BLOCKED", "IN_PROGRESS", "SUCCESS"]
    assert seen[ids[2]][-1] == "FAILURE" and sim.imports[ids[2]]["reason"]
    assert all(len(i) == 19 and i.isdigit() for i in ids)


# --- the demo world -----------------------------------------------------------------------


async def test_world_ticks_in_the_background() -> None:
    async with DemoWorld(seed=1, tick_interval=0.01) as world:
        await eventually(lambda: world.zendesk.ticks >= 3)
        assert world.jtl.ticks >= 2 and world.esales.ticks >= 2


async def test_world_env_lets_every_source_poll(session: aiohttp.ClientSession) -> None:
    async with DemoWorld(seed=1, tick_interval=3600) as world:
        env = world.env()
        world.tick()
        assert env["DEMO_ESALES_IDS"].split(",") == world.esales_ids()
        assert all(env[k].startswith("http://127.0.0.1:") for k in env if k.endswith("_URL"))
        configs = [
            JtlSource.model_validate({
                "name": "jtl", "kind": "jtl", "base_url": env["DEMO_JTL_URL"],
                "tenant_id": env["DEMO_JTL_TENANT_ID"],
                "auth": {"type": "oauth2", "token_url": env["DEMO_JTL_TOKEN_URL"],
                         "client_id": env["DEMO_JTL_CLIENT_ID"],
                         "client_secret": env["DEMO_JTL_CLIENT_SECRET"]}}),
            TerminalSource.model_validate({
                "name": "terminal", "kind": "terminal", "base_url": env["DEMO_TERMINAL_URL"],
                "connection_token": env["DEMO_TERMINAL_CONNECTION_TOKEN"],
                "auth": {"type": "bearer", "token": env["DEMO_TERMINAL_TOKEN"]}}),
            EsalesSource.model_validate({
                "name": "esales", "kind": "esales", "base_url": env["DEMO_ESALES_URL"],
                "api_key": env["DEMO_ESALES_API_KEY"]}),
            ZendeskSource.model_validate({
                "name": "zendesk", "kind": "zendesk", "base_url": env["DEMO_ZENDESK_URL"],
                "auth": {"type": "basic", "username": f"{env['DEMO_ZENDESK_EMAIL']}/token",
                         "password": env["DEMO_ZENDESK_TOKEN"]}}),
        ]
        results = {c.name: await build_source(c, session).poll(world.esales_ids())
                   for c in configs}
        assert len(results["jtl"].observations) == 5
        assert len(results["terminal"].observations) == 1
        assert [j.state for j in results["esales"].observations] == [JobState.PENDING] * 5
        assert len(results["zendesk"].observations) == 1


# --- the vendors' real shapes (issue 12) --------------------------------------------------


async def test_terminal_filters_by_status_with_a_limit_newest_first(
        session: aiohttp.ClientSession) -> None:
    async with TerminalSimulator(api_key="k", connection_token="c") as terminal:
        old = terminal.add_sync("sync_OLD", status="in_progress")
        terminal.add_sync("sync_DONE", status="completed")
        new = terminal.add_sync("sync_NEW", status="in_progress")
        status, text, _ = await get(session, f"{terminal.base_url}/syncs?status=in_progress"
                                    "&limit=1", Authorization="Bearer k",
                                    **{"Connection-Token": "c"})
        body = json.loads(text)
        assert (status, [s["id"] for s in body["results"]]) == (200, [new])
        status, text, _ = await get(session, f"{terminal.base_url}/syncs?status=in_progress"
                                    f"&limit=1&cursor={body['next']}", Authorization="Bearer k",
                                    **{"Connection-Token": "c"})
        assert [s["id"] for s in json.loads(text)["results"]] == [old]


async def test_terminal_errors_are_flat_code_message_detail(
        session: aiohttp.ClientSession) -> None:
    async with TerminalSimulator(api_key="k", connection_token="c") as terminal:
        status, text, _ = await get(session, f"{terminal.base_url}/syncs/sync_NONE",
                                    Authorization="Bearer k", **{"Connection-Token": "c"})
        assert (status, set(json.loads(text))) == (404, {"code", "message", "detail"})


@pytest.mark.parametrize(("status", "event"), [
    ("requested", "sync.requested"), ("in_progress", "sync.started"),
    ("completed", "sync.completed"), ("failed", "sync.failed"),
])
def test_terminal_webhooks_use_the_real_event_names_and_body(status: str, event: str) -> None:
    sim = TerminalSimulator()
    body = sim.webhook_event(sim.add_sync(status=status))
    assert body["type"] == event
    assert set(body) == {"id", "type", "timestamp", "detail"}
    assert set(body["detail"]) == {"connection", "sync"}


async def test_zendesk_show_many_answers_the_ids_it_knows(
        zendesk: ZendeskSimulator, session: aiohttp.ClientSession) -> None:
    one = zendesk.add_job(status="working")
    two = zendesk.add_job(status="queued")
    status, text, headers = await get(
        session, f"{zendesk.base_url}/api/v2/job_statuses/show_many.json?ids={two},gone,{one}",
        Authorization=ZD_AUTH)
    assert (status, [j["id"] for j in json.loads(text)["job_statuses"]]) == (200, [two, one])
    assert headers["X-Rate-Limit"] == "700"
    assert int(headers["X-Rate-Limit-Remaining"]) < 700


def test_zendesk_lists_by_completion_then_creation_newest_first() -> None:
    sim = ZendeskSimulator()
    first = sim.add_job(status="working")
    second = sim.add_job(status="completed")
    third = sim.add_job(status="queued")
    sim.set_job(first, status="completed")  # finished after `second`
    assert [j["id"] for j in sim.listed()] == [first, second, third]


def test_zendesk_failed_items_carry_error_and_details() -> None:
    sim = ZendeskSimulator(seed=1)
    for _ in range(TICKS):
        sim.tick()
    failed = [r for j in sim.jobs.values() for r in (j["results"] or [])
              if r.get("status") == "Failed"]
    assert failed
    assert all(r["error"] and r["details"] and "errors" not in r for r in failed)


async def test_jtl_answers_carry_its_rate_limit_headers(session: aiohttp.ClientSession) -> None:
    async with JtlSimulator(token="t") as jtl:
        status, _, headers = await get(
            session, f"{jtl.base_url}/v1/workers/status", Authorization="Bearer t",
            **{"x-tenant-id": jtl.tenant_id, "x-appid": "a", "x-appversion": "1"})
        assert status == 200
        assert {k: headers[k] for k in ("X-RateLimit-Limit", "X-RateLimit-Remaining",
                                        "X-RateLimit-Interval-Length-Seconds")} == {
            "X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "599",
            "X-RateLimit-Interval-Length-Seconds": "60"}


async def test_zendesk_budget_refills_each_minute_by_its_clock(
        session: aiohttp.ClientSession) -> None:
    now = [0.0]
    async with ZendeskSimulator(email="a@b.c", api_token="tok", rate_limit=1,
                                clock=lambda: now[0]) as zendesk:
        url = f"{zendesk.base_url}/api/v2/job_statuses.json"
        assert (await get(session, url, Authorization=ZD_AUTH))[0] == 200
        status, _, headers = await get(session, url, Authorization=ZD_AUTH)
        assert (status, headers["Retry-After"]) == (429, "60")
        now[0] = 60.0
        assert (await get(session, url, Authorization=ZD_AUTH))[0] == 200
