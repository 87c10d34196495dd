"""JTL sync actions over real sockets: the simulator's Configure Sync (seed 001) and run
control, the source's client for them, `POST /v1/jtl/...` on a running bridge (admin token)
and `bridge jtl configure|restart`; sync names in messages (`job.name`)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.cli import main
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.sources.jtl_control import ControlError, configure_body, parse_sets
from tests.config_support import jtl_source, pager_sink, rule, write_config
from tests.server_support import served
from tests.test_sources_jtl import TENANT, TOKEN, source

SYNC = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
ADMIN = "admin-token-for-jtl-tests"

@pytest.fixture
async def sim() -> AsyncIterator[JtlSimulator]:
    async with JtlSimulator(tenant_id=TENANT, token=TOKEN) as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def config_id(sim: JtlSimulator, sync_id: str = SYNC) -> str:
    return str(sim.items[sync_id]["configurations"][0]["identifier"])


# --- the source's client against the simulator ----------------------------------------------


async def test_configure_sends_the_seed_request_and_returns_the_worker_sync_item(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_sync(SYNC, sync_name="orders", sales_channel="Amazon DE")
    jtl = source(sim, session)
    body = configure_body("PT15M", parse_sets([f"{config_id(sim)}=250"]))
    item = await jtl.configure(SYNC, body)
    # Seed 001's request (CreateWorkerSyncConfiguration) and response (WorkerSyncItem).
    assert sim.control_log == [("POST", f"/erp/v2/workers/{SYNC}", {
        "interval": "PT15M", "configs": [{"identifier": config_id(sim), "value": "250"}]})]
    assert set(item) == {"identifier", "syncName", "salesChannelName", "salesChannelId",
                         "interval", "reportProgress", "configurations"}
    assert (item["identifier"], item["interval"], item["syncName"]) == (SYNC, "PT15M", "orders")
    [config] = item["configurations"]
    assert set(config) == {"identifier", "displayName", "displayDescription", "type",
                           "currentValue", "isRequired"}
    assert config["currentValue"] == "250"
    assert jtl.names[SYNC] == "Amazon DE: orders"


async def test_refusals_carry_jtls_reason(sim: JtlSimulator,
                                          session: aiohttp.ClientSession) -> None:
    sim.add_sync(SYNC)
    jtl = source(sim, session)
    with pytest.raises(ControlError, match="No configuration 'nope'"):
        await jtl.configure(SYNC, configure_body(None, parse_sets(["nope=1"])))
    with pytest.raises(ControlError, match=r"HTTP 404.*No sync"):
        await jtl.control.run("0000-unknown", "restart")
    assert sim.items[SYNC]["interval"] == "PT10M"


@pytest.mark.parametrize(("interval", "sets", "message"), [
    (None, [], "give an interval"),
    ("15m", [], "not an ISO 8601 duration"),
    ("PT", [], "not an ISO 8601 duration"),
    ("PT15M", ["=1"], "expected CONFIG_ID=VALUE"),
    ("PT15M", ["novalue"], "expected CONFIG_ID=VALUE"),
])
def test_bad_requests_are_named_before_sending(interval: str | None, sets: list[str],
                                              message: str) -> None:
    with pytest.raises(ControlError, match=message):
        configure_body(interval, parse_sets(sets))


async def test_restart_uses_the_v23_route_and_the_sync_starts_again(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_sync(SYNC, state=4, text="SleepingError")
    answer = await source(sim, session).control.run(SYNC, "restart")
    assert sim.control_log == [("POST", f"/erp/v2/worker/syncs/{SYNC}/restart", None)]
    assert answer["actionId"] == "Restart" and answer["requestedAt"].endswith("Z")
    assert sim.syncs[SYNC]["State"] == 1


async def test_the_deprecated_put_control_is_simulated_too(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_sync(SYNC, state=3)
    headers = {"Authorization": f"Bearer {TOKEN}", "x-tenant-id": TENANT,
               "x-appid": "t/1", "x-appversion": "1"}
    async with session.put(f"{sim.base_url}/v2/workers/{SYNC}", json={"action": 1},
                           headers=headers) as response:
        assert response.status == 200
    assert sim.syncs[SYNC]["State"] == 7
    async with session.put(f"{sim.base_url}/v2/workers/{SYNC}", json={"action": 5},
                           headers=headers) as response:
        assert response.status == 400


async def test_polls_name_jobs_from_the_worker_list_once(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_sync(SYNC, sync_name="orders", sales_channel="Amazon DE")
    jtl = source(sim, session)
    [job] = (await jtl.poll([])).observations
    assert job.name == "Amazon DE: orders"
    await jtl.poll([])
    # Known names are not asked for again.
    assert sim.request_count("/erp/v2/workers") == 1


async def test_a_failing_name_lookup_costs_the_names_not_the_poll(
        sim: JtlSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_sync(SYNC)
    jtl = source(sim, session)
    sim.items.clear()
    sim.syncs[SYNC]["State"] = 4
    [job] = (await jtl.poll([])).observations
    assert (job.name, job.raw_state) == (None, "SleepingError")


# --- through a running bridge -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Running:
    url: str
    http: aiohttp.ClientSession
    bridge: Bridge
    receiver: WebhookReceiver
    folder: Path

    async def call(self, path: str, body: object, token: str | None = ADMIN
                   ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(self.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()


@asynccontextmanager
async def running(tmp_path: Path, sim: JtlSimulator) -> AsyncIterator[Running]:
    folder = tmp_path / "config"
    folder.mkdir()
    async with WebhookReceiver() as receiver:
        path = write_config(folder, jtl_source(sim.base_url),
                            pager_sink(receiver.url, retry={"attempts": 1}), rule("changes"),
                            state=tmp_path / "state.db")
        async with served(path, admin_token=ADMIN) as (bridge, url, http):
            yield Running(url=url, http=http, bridge=bridge, receiver=receiver, folder=folder)


async def test_api_configure_and_restart_need_the_admin_token(
        tmp_path: Path, sim: JtlSimulator) -> None:
    sim.add_sync(SYNC)
    async with running(tmp_path, sim) as bridge:
        path = f"/v1/jtl/erp/syncs/{SYNC}"
        status, _ = await bridge.call(path + "/configure", {"interval": "PT1H"}, token=None)
        assert status == 401
        status, _ = await bridge.call(path + "/restart", {}, token="wrong")
        assert status == 401
        assert sim.control_log == []
        status, item = await bridge.call(path + "/configure", {"interval": "PT1H"})
        assert (status, item["interval"]) == (200, "PT1H")
        status, answer = await bridge.call(path + "/restart", {})
        assert (status, answer["actionId"]) == (200, "Restart")
        status, body = await bridge.call(path + "/configure", {"interval": "hourly"})
        assert status == 400 and "ISO 8601" in body["error"]
        status, body = await bridge.call("/v1/jtl/nope/syncs/x/restart", {})
        assert status == 404


async def test_sync_names_show_in_messages(tmp_path: Path, sim: JtlSimulator) -> None:
    sim.add_sync(SYNC, state=2, sync_name="orders", sales_channel="Amazon DE")
    async with running(tmp_path, sim) as bridge:
        await bridge.bridge.pipeline.poll("erp")
        sim.set_sync(SYNC, State=4, ProgressText="QuotaExceeded")
        await bridge.bridge.pipeline.poll("erp")
        async with asyncio.timeout(10):
            for _ in itertools.count():
                if bridge.receiver.requests:
                    break
                await asyncio.sleep(0.05)
        text = bridge.receiver.requests[0].json()["data"]["text"]
        assert "Amazon DE: orders" in text and SYNC not in text


async def test_bridge_jtl_configure_and_restart_print_jtls_answer(
        tmp_path: Path, sim: JtlSimulator, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sim.add_sync(SYNC, sync_name="orders", sales_channel="Amazon DE")
    monkeypatch.setenv("BRIDGE_ADMIN_TOKEN", ADMIN)
    async with running(tmp_path, sim) as bridge:
        def run(*argv: str) -> int:
            return main([*argv, "--url", bridge.url])

        code = await asyncio.to_thread(run, "jtl", "configure", "erp", SYNC, "--interval",
                                       "PT15M", "--set", f"{config_id(sim)}=250")
        out = capsys.readouterr().out
        assert code == 0
        assert "Amazon DE: orders" in out and "PT15M" in out and "'250'" in out
        assert sim.control_log[-1][2] == {
            "interval": "PT15M", "configs": [{"identifier": config_id(sim), "value": "250"}]}
        code = await asyncio.to_thread(run, "jtl", "restart", "erp", SYNC)
        assert code == 0 and "restart of" in capsys.readouterr().out
        code = await asyncio.to_thread(run, "jtl", "configure", "erp", SYNC, "--interval",
                                       "soon")
        assert code == 1 and "ISO 8601" in capsys.readouterr().err
        monkeypatch.setenv("BRIDGE_ADMIN_TOKEN", "wrong")
        code = await asyncio.to_thread(run, "jtl", "restart", "erp", SYNC)
        assert code == 1 and "HTTP 401" in capsys.readouterr().err
