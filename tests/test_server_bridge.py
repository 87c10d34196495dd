"""The HTTP server over the real composition root (`bridge.app.Bridge`): a signed push goes
through detection, rules and the outbox to a local webhook receiver; watches reach the store;
a dead letter is retried from the API and delivered."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from bridge.app import Bridge
from bridge.simulators.webhook_receiver import WebhookReceiver
from tests.config_support import pager_sink, push_source, rule, source, write_config
from tests.push_support import PUSH_SECRET
from tests.server_support import served


def config_parts(receiver: WebhookReceiver) -> tuple[str, ...]:
    """The push source `hooks` (and a polled one, `imports`); each job pushed to `hooks`
    delivered to `pager` once, as it appears."""
    return (push_source(progress="percent", message="note",
                        states={"done": "succeeded", "boom": "failed"}),
            source("imports", "esales", base_url="http://127.0.0.1:9",
                   api_key="esales-key-for-tests", interval="1h"),
            pager_sink(receiver.url, retry={"attempts": 1}),
            rule("pushed-job", "appeared", source="hooks", template="appeared.j2"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Running:
    url: str
    http: aiohttp.ClientSession
    bridge: Bridge
    receiver: WebhookReceiver

    async def push(self, payload: object, msg_id: str) -> tuple[int, Any]:
        body = json.dumps(payload)
        when = datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(PUSH_SECRET).sign(msg_id, when, body),
            "Content-Type": "application/json",
        }
        async with self.http.post(f"{self.url}/v1/events/hooks", data=body,
                                  headers=headers) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, **kwargs) as response:
            return response.status, await response.json()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    # Polls the API: the dead-lettering happens in a worker that the test cannot await.
    async with asyncio.timeout(within):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with WebhookReceiver() as receiver:
        path = write_config(tmp_path, *config_parts(receiver),
                            templates={"appeared.j2": "{{ job.id }} is {{ job.state }}"})
        async with served(path, admin_token=None) as (bridge, url, http):
            yield Running(url=url, http=http, bridge=bridge, receiver=receiver)


async def test_signed_push_becomes_a_tracked_job_and_an_event(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        status, body = await r.push({"id": "exp-1", "status": "running", "percent": 20},
                                    "msg_1")
        jobs = (await r.get("/v1/jobs?source=hooks"))["jobs"]
        events = (await r.get("/v1/events"))["events"]
    assert status == 202
    assert len(body["events"]) == 1
    assert [(j["id"], j["state"], j["progress"]) for j in jobs] == [("exp-1", "running", 20)]
    assert body["events"][0] in [e["id"] for e in events]


async def test_pushed_state_change_is_a_transition(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        await r.push({"id": "exp-1", "status": "running"}, "msg_1")
        status, body = await r.push({"id": "exp-1", "status": "boom", "note": "disk full"},
                                    "msg_2")
        events = (await r.get("/v1/events?limit=1"))["events"]
    assert status == 202
    assert events[0]["id"] == body["events"][0]
    assert (events[0]["on"], events[0]["from"], events[0]["to"]) == (
        "transition", "running", "failed")
    assert events[0]["job"]["message"] == "disk full"


async def test_push_with_a_body_of_the_wrong_shape_is_400(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        status, body = await r.push(["not", "a", "job"], "msg_1")
    assert status == 400
    assert body["error"]


async def test_push_counts_in_the_event_metrics(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        await r.push({"id": "exp-1", "status": "pending"}, "msg_1")
        async with r.http.get(r.url + "/metrics") as response:
            text = await response.text()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "bridge_events_total"]
    assert any(s.labels == {"on": "appeared", "source": "hooks"} and s.value == 1
               for s in samples)


async def test_watch_reaches_the_store_through_the_bridge(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        status, _ = await r.post("/v1/watches",
                                 json={"source": "imports", "id": "1234567890123456789"})
        watched = await r.bridge.store.list_watches("imports")
        unknown, _ = await r.post("/v1/watches", json={"source": "nope", "id": "1"})
    assert status == 201
    assert watched == ["1234567890123456789"]
    assert unknown == 404


async def test_dead_letter_is_retried_from_the_api_and_delivered(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        r.receiver.script([400], then=200)
        await r.push({"id": "exp-9", "status": "running"}, "msg_1")

        async def dead() -> list[Any]:
            return list((await r.get("/v1/outbox?status=dead"))["deliveries"])

        await eventually(lambda: _nonempty(dead))
        [letter] = await dead()
        status, body = await r.post(f"/v1/outbox/{letter['id']}/retry")
        await r.receiver.wait_for(lambda: letter["id"] in r.receiver.delivered_ids())
    assert letter["sink"] == "pager"
    assert letter["rule"] == "pushed-job"
    assert letter["text"] == "exp-9 is running"
    assert (status, body) == (200, {"retried": 1})


async def _nonempty(fetch: Callable[[], Awaitable[list[Any]]]) -> bool:
    return bool(await fetch())


async def test_readyz_is_200_while_the_bridge_runs(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        body = await r.get("/readyz")
    assert body["status"] == "ready"
