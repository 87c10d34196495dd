"""Silences over real sockets: made through the HTTP API (and `bridge silence`), they mute
exactly the matching notifications of a running bridge, which are recorded as silenced,
counted in /metrics and never reach the webhook receiver; until_resolved ends on success;
a silence made through one instance mutes another sharing the store."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Bridge
from bridge.cli import main
from bridge.simulators.webhook_receiver import WebhookReceiver
from tests.config_support import pager_sink, push_source, rule, write_config
from tests.push_support import signed_push
from tests.server_support import served

STATES = {"done": "succeeded", "boom": "failed", "run": "running"}

TOKEN = "admin-token-for-silence-tests"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    url: str
    http: aiohttp.ClientSession
    bridge: Bridge
    receiver: WebhookReceiver
    pushes: list[int]

    async def push(self, job_id: str, status: str) -> None:
        self.pushes.append(len(self.pushes) + 1)
        await signed_push(self.http, self.url, "hooks", {"id": job_id, "status": status},
                          f"msg_{job_id}_{status}_{len(self.pushes)}")

    async def call(self, method: str, path: str, body: object = None,
                   token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.url + path, json=body,
                                     headers=headers) as response:
            return response.status, await response.json()

    async def delivered_texts(self, count: int) -> list[str]:
        """The texts the receiver got, once there are `count` (after the outbox drained)."""
        async with asyncio.timeout(10):
            for _ in itertools.count():
                if len(self.receiver.requests) >= count and not await self.pending():
                    break
                await asyncio.sleep(0.05)
        return sorted(r.json()["data"]["text"] for r in self.receiver.requests)

    async def pending(self) -> int:
        _, body = await self.call("GET", "/v1/outbox?status=pending")
        return len(body["deliveries"])

    async def silenced(self) -> list[dict[str, Any]]:
        _, body = await self.call("GET", "/v1/outbox?status=silenced")
        return list(body["deliveries"])


@asynccontextmanager
async def instance(tmp_path: Path, receiver: WebhookReceiver,
                   state: str = "state.db") -> AsyncIterator[Instance]:
    path = write_config(
        tmp_path / "config", push_source(states=STATES),
        pager_sink(receiver.url, retry={"attempts": 1}),
        rule("any-change", template="note.j2", continue_=True),
        rule("new-job", "appeared", template="note.j2"),
        state=tmp_path / state, templates={"note.j2": "{{ rule }} {{ job.id }} {{ job.state }}"})
    async with served(path, admin_token=TOKEN) as (bridge, url, http):
        yield Instance(url=url, http=http, bridge=bridge, receiver=receiver, pushes=[])


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as value:
        yield value


def silenced_total(text: str) -> dict[tuple[str, str], float]:
    return {(s.labels["rule"], s.labels["sink"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "bridge_silenced_total"}


async def test_a_silence_mutes_exactly_the_matching_notifications(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    async with instance(tmp_path, receiver) as r:
        status, made = await r.call("POST", "/v1/silences", {
            "matchers": {"source": "hoo*", "job.id": "exp-1*", "rule": "any-change"},
            "duration": "2h", "comment": "ERP upgrade", "author": "ops@example.com"})
        await r.push("exp-1", "run")    # appeared: new-job is not silenced
        await r.push("exp-1", "boom")   # transition: any-change silenced
        await r.push("exp-2", "run")
        await r.push("exp-2", "boom")   # another job: sent
        texts = await r.delivered_texts(3)
        muted = await r.silenced()
        async with r.http.get(r.url + "/metrics") as response:
            counted = silenced_total(await response.text())
        _, listed = await r.call("GET", "/v1/silences")
    assert status == 201
    assert made["status"] == "active" and made["id"].startswith("sil_")
    assert texts == ["any-change exp-2 failed", "new-job exp-1 running", "new-job exp-2 running"]
    assert [(d["rule"], d["job_id"], d["text"]) for d in muted] == [
        ("any-change", "exp-1", "any-change exp-1 failed")]
    assert muted[0]["silenced"] == f"silence {made['id']} (ERP upgrade)"
    assert counted == {("any-change", "pager"): 1.0}
    assert [s["id"] for s in listed["silences"]] == [made["id"]]


async def test_until_resolved_ends_when_the_job_succeeds(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    async with instance(tmp_path, receiver) as r:
        _, made = await r.call("POST", "/v1/silences", {
            "matchers": {"source": "hooks", "job.id": "exp-1"}, "until_resolved": True})
        await r.push("exp-1", "run")    # appeared, silenced
        await r.push("exp-1", "boom")   # silenced
        await r.push("exp-1", "done")   # the success is the all-clear: sent, silence ends
        await r.push("exp-1", "boom")   # failing again later is news again
        texts = await r.delivered_texts(2)
        muted = await r.silenced()
        _, current = await r.call("GET", "/v1/silences")
        _, everything = await r.call("GET", "/v1/silences?expired=1")
    assert texts == ["any-change exp-1 failed", "any-change exp-1 succeeded"]
    assert sorted(d["text"] for d in muted) == ["any-change exp-1 failed", "new-job exp-1 running"]
    assert current["silences"] == []
    [ended] = everything["silences"]
    assert (ended["id"], ended["ended"], ended["status"]) == (made["id"], "resolved", "expired")


async def test_expire_lets_notifications_through_again(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    async with instance(tmp_path, receiver) as r:
        _, made = await r.call("POST", "/v1/silences",
                               {"matchers": {"job.id": "exp-*"}, "duration": "1h"})
        await r.push("exp-1", "run")
        status, expired = await r.call("DELETE", f"/v1/silences/{made['id']}")
        again, _ = await r.call("DELETE", f"/v1/silences/{made['id']}")
        await r.push("exp-2", "run")
        texts = await r.delivered_texts(1)
    assert (status, expired["ended"], expired["status"]) == (200, "expired", "expired")
    assert again == 404
    assert texts == ["new-job exp-2 running"]


@pytest.mark.parametrize(("body", "message"), [
    ({"matchers": {"sourc": "x"}, "duration": "1h"}, "unknown matcher field 'sourc'"),
    ({"matchers": {}, "duration": "1h"}, "non-empty object"),
    ({"matchers": {"source": "x"}}, "needs an end"),
    ({"matchers": {"source": "x"}, "until_resolved": True}, "needs a `job.id` matcher"),
    ({"matchers": {"source": "x"}, "duration": "soon"}, "expected a duration"),
    ({"matchers": {"source": "x"}, "ends": "2020-01-01T00:00:00Z"}, "after `starts`"),
    ({"matchers": {"source": "x"}, "ends": "tomorrow"}, "ISO 8601"),
])
async def test_bad_silences_are_refused_with_what_to_send(
        tmp_path: Path, receiver: WebhookReceiver, body: object, message: str) -> None:
    async with instance(tmp_path, receiver) as r:
        status, answer = await r.call("POST", "/v1/silences", body)
        _, listed = await r.call("GET", "/v1/silences")
    assert status == 400
    assert message in answer["error"]
    assert listed["silences"] == []


async def test_silence_writes_need_the_admin_token(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    async with instance(tmp_path, receiver) as r:
        body = {"matchers": {"source": "x"}, "duration": "1h"}
        without, _ = await r.call("POST", "/v1/silences", body, token=None)
        wrong, _ = await r.call("POST", "/v1/silences", body, token="nope")
        _, made = await r.call("POST", "/v1/silences", body)
        delete, _ = await r.call("DELETE", f"/v1/silences/{made['id']}", token=None)
        _, listed = await r.call("GET", "/v1/silences", token=None)
    assert (without, wrong, delete) == (401, 401, 401)
    assert [s["id"] for s in listed["silences"]] == [made["id"]]


async def test_a_silence_made_on_one_instance_mutes_another(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    async with instance(tmp_path, receiver) as first, instance(tmp_path, receiver) as second:
        _, made = await first.call("POST", "/v1/silences",
                                   {"matchers": {"job.id": "exp-1"}, "duration": "1h"})
        await second.push("exp-1", "run")
        await second.push("exp-2", "run")
        texts = await second.delivered_texts(1)
        muted = await second.silenced()
    assert texts == ["new-job exp-2 running"]
    assert [d["silenced"] for d in muted] == [f"silence {made['id']}"]


async def test_bridge_silence_add_list_expire(
        tmp_path: Path, receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_ADMIN_TOKEN", TOKEN)
    async with instance(tmp_path, receiver) as r:
        def run(*argv: str) -> int:
            return main(["silence", *argv, "--url", r.url])

        added = await asyncio.to_thread(run, "add", "source=hooks", "job.id=exp-1",
                                        "--duration", "2h", "--comment", "upgrade",
                                        "--author", "ana")
        out = capsys.readouterr().out
        silence_id = out.split()[1].rstrip(":")
        listed = await asyncio.to_thread(run, "list")
        listing = capsys.readouterr().out
        bad = await asyncio.to_thread(run, "add", "sorce=hooks")
        refused = capsys.readouterr().err
        expired = await asyncio.to_thread(run, "expire", silence_id)
        expired_out = capsys.readouterr().out
        missing = await asyncio.to_thread(run, "expire", silence_id)
        missing_err = capsys.readouterr().err
        _, current = await r.call("GET", "/v1/silences")
    assert (added, listed, bad, expired, missing) == (0, 0, 1, 0, 1)
    assert out.startswith("added sil_") and "job.id=exp-1 source=hooks" in out
    assert silence_id in listing and "active" in listing and "upgrade · ana" in listing
    assert "unknown matcher field 'sorce'" in refused
    assert expired_out.strip() == f"expired {silence_id}"
    assert "HTTP 404" in missing_err
    assert current["silences"] == []


async def test_bridge_outbox_lists_silenced_rows_with_their_reason(
        tmp_path: Path, receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    async with instance(tmp_path, receiver) as r:
        _, made = await r.call("POST", "/v1/silences", {
            "matchers": {"job.id": "exp-1"}, "duration": "1h", "comment": "upgrade"})
        await r.push("exp-1", "run")
        config = str(tmp_path / "config" / "rules.toml")
        listed = await asyncio.to_thread(main, ["outbox", "--status", "silenced",
                                                "--config", config, "--json"])
        rows = json.loads(capsys.readouterr().out)
        text = await asyncio.to_thread(main, ["outbox", "--status", "silenced",
                                              "--config", config])
        table = capsys.readouterr().out
    assert (listed, text) == (0, 0)
    assert [(row["status"], row["job_id"], row["silenced"]) for row in rows] == [
        ("silenced", "exp-1", f"silence {made['id']} (upgrade)")]
    assert f"silence {made['id']} (upgrade)" in table
