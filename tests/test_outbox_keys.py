"""Outbox rows are keyed per (event, rule, sink): two rules that notify one sink for one
event deliver two messages, each retry keeps its `webhook-id`, and a state database written
by the previous release (schema version 2, ids made per (event, sink)) opens and delivers
the rows it had pending, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from bridge.app import Bridge
from bridge.config import load_config
from bridge.config.schema import RetryPolicy, WebhookSink
from bridge.deliver import DeliveryWorkers
from bridge.metrics import Metrics
from bridge.model import DeliveryStatus, EventKind, Notification
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.sinks import build_sink
from bridge.store import schema
from bridge.store.base import PollCommit, Store
from tests.config_support import slack_sink
from tests.crash_support import (
    EMAIL,
    SECRET,
    TOKEN,
    eventually,
    webhook_sink,
    write_config,
    zendesk_source,
)
from tests.store_fixtures import BACKENDS, opened, store_url

SLACK_TOKEN = "xoxb-fake-token"


def two_rules(*sinks: str) -> str:
    notify = ", ".join(f'"{s}"' for s in sinks)
    return f"""
[[rules]]
name = "audit"
on = "transition"
template = "transition.slack.j2"
notify = [{notify}]
continue = true

[[rules]]
name = "page"
on = "transition"
to = ["failed"]
template = "transition.blocks.j2"
notify = [{notify}]
"""


async def test_two_rules_to_one_sink_deliver_both_messages_each_with_its_own_stable_id(
    tmp_path: Path,
) -> None:
    async with (
        ZendeskSimulator(email=EMAIL, api_token=TOKEN) as zendesk,
        WebhookReceiver(secret=SECRET) as receiver,
        FakeSlack(token=SLACK_TOKEN, channels={"#ops": "C0OPS"}) as slack,
    ):
        zendesk.add_job("job-a", status="working")
        config = write_config(tmp_path, zendesk_source(zendesk, interval="1h"),
                              webhook_sink(receiver.url, schedule="100ms"),
                              slack_sink(slack.api_url, token=SLACK_TOKEN, mode="post",
                                         min_interval="10ms",
                                         retry={"schedule": ["100ms"], "attempts": 20}),
                              two_rules("pager", "ops-slack"))
        # The first attempt of each fails: the retry must carry the same webhook-id.
        receiver.script([503, 503])
        polled = asyncio.Event()
        bridge = Bridge(load_config(config), serve_http=False, drain_timeout=1.0,
                        observers=[lambda outcome: polled.set()])
        async with bridge:
            async with asyncio.timeout(10):
                await polled.wait()
            zendesk.set_job("job-a", status="failed")
            outcome = await bridge.pipeline.poll("zendesk")
            [event] = [e for e in outcome.events if e.on is EventKind.TRANSITION]
            await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 2, within=10)
            await slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 2,
                                 within=10)
    expected = {
        Notification(event_id=event.id, rule=rule, sink="pager", source="zendesk",
                     job_id="job-a", payload={}, on=event.on).delivery_id: rule
        for rule in ("audit", "page")
    }
    assert len(expected) == 2
    assert set(receiver.delivered_ids()) == set(expected)
    assert sorted(r.status for r in receiver.requests) == [200, 200, 503, 503]
    assert all(r.verified for r in receiver.requests)
    # Every attempt of one rule's message carried that message's id, the retry included.
    rules_by_id: dict[str, set[str]] = {}
    for request in receiver.requests:
        rule = request.json()["data"]["rule"]
        rules_by_id.setdefault(request.webhook_id or "", set()).add(rule)
    assert rules_by_id == {i: {rule} for i, rule in expected.items()}
    posted = slack.calls_to("chat.postMessage")
    assert len(posted) == 2
    assert any("blocks" in c.body for c in posted) and any("blocks" not in c.body for c in posted)


# --- a state database of the previous release ---------------------------------------------

# Schema version 2 as the previous release created it (frozen here on purpose: it is what
# is on users' disks, whatever schema.py says later).
V2_SCHEMA = (
    """CREATE TABLE jobs (source TEXT NOT NULL, job_id TEXT NOT NULL, state TEXT NOT NULL,
        updated_us BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (source, job_id))""",
    "CREATE INDEX jobs_updated ON jobs (updated_us)",
    "CREATE TABLE health (source TEXT PRIMARY KEY, data TEXT NOT NULL)",
    """CREATE TABLE events (seq {seq_pk}, id TEXT NOT NULL, source TEXT NOT NULL,
        kind TEXT NOT NULL, at_us BIGINT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX events_source ON events (source, seq)",
    """CREATE TABLE watches (source TEXT NOT NULL, job_id TEXT NOT NULL,
        added_us BIGINT NOT NULL, PRIMARY KEY (source, job_id))""",
    """CREATE TABLE rule_marks (rule TEXT NOT NULL, source TEXT NOT NULL,
        job_id TEXT NOT NULL, notified_us BIGINT NOT NULL, state TEXT,
        PRIMARY KEY (rule, source, job_id))""",
    """CREATE TABLE outbox (id TEXT PRIMARY KEY, sink TEXT NOT NULL, source TEXT NOT NULL,
        job_id TEXT, status TEXT NOT NULL, created_us BIGINT NOT NULL, next_attempt_us BIGINT,
        leased INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT, finished_us BIGINT, data TEXT NOT NULL)""",
    "CREATE INDEX outbox_due ON outbox (status, next_attempt_us)",
    "CREATE INDEX outbox_finished ON outbox (status, finished_us)",
    """CREATE TABLE message_refs (sink TEXT NOT NULL, source TEXT NOT NULL,
        job_id TEXT NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL,
        PRIMARY KEY (sink, source, job_id))""",
    "CREATE INDEX outbox_job ON outbox (sink, source, job_id, status)",
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (2)",
)
SEQ_PK = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
          "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"}


def old_delivery_id(event_id: str, sink: str) -> str:
    """How the previous release keyed outbox rows: per (event, sink)."""
    return "msg_" + hashlib.sha256(f"{event_id}\x1f{sink}".encode()).hexdigest()[:24]


def us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def old_rows(now: datetime) -> list[tuple[Any, ...]]:
    """(id, sink, source, job_id, status, created_us, next_attempt_us, leased, attempts,
    last_error, finished_us, data): pending, pending after two failures, leased by a bridge
    that crashed, delivered and dead."""
    rows = []
    for n, (status, leased, attempts) in enumerate([
        ("pending", 0, 0), ("pending", 0, 2), ("pending", 1, 1),
        ("delivered", 0, 1), ("dead", 0, 10),
    ]):
        event_id = f"evt_old_{n}"
        data = {"event_id": event_id, "rule": "job-failed", "sink": "pager",
                "source": "zendesk", "job_id": f"job-{n}",
                "payload": {"text": f"old {n}", "body": json.dumps({"data": {"n": n}})},
                "on": "transition", "terminal": True, "state": "failed"}
        created = us(now - timedelta(minutes=10 - n))
        finished = us(now) if status != "pending" else None
        next_at = created if status == "pending" else None
        rows.append((old_delivery_id(event_id, "pager"), "pager", "zendesk", f"job-{n}",
                     status, created, next_at, leased, attempts,
                     "HTTP 503" if attempts else None, finished, json.dumps(data)))
    return rows


INSERT_OLD = ("INSERT INTO outbox (id, sink, source, job_id, status, created_us, "
              "next_attempt_us, leased, attempts, last_error, finished_us, data) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


async def write_previous_release_db(backend: str, url: str, rows: Sequence[tuple[Any, ...]]
                                    ) -> None:
    statements = [s.format(seq_pk=SEQ_PK[backend]) for s in V2_SCHEMA]
    if backend == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.executemany(INSERT_OLD, rows)
        return
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement)
        async with conn.cursor() as cur:
            await cur.executemany(INSERT_OLD.replace("?", "%s"), rows)


@pytest.fixture(params=BACKENDS)
async def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with store_url(request.param, tmp_path) as url:
        await write_previous_release_db(request.param, url, old_rows(datetime.now(UTC)))
        yield url


async def stored_version(store: Store) -> int:
    # Both backends expose their connection through `_rows` (SqlBase): read the version the
    # way the migrator does.
    rows = await store._rows("SELECT MAX(version) FROM schema_version")  # type: ignore[attr-defined]
    return int(rows[0][0])


async def test_a_previous_release_database_opens_and_delivers_its_pending_rows(
    old_db: str,
) -> None:
    rows = old_rows(datetime.now(UTC))
    pending_ids = [r[0] for r in rows if r[4] == "pending"]
    async with (
        WebhookReceiver(secret=SECRET) as receiver,
        aiohttp.ClientSession() as session,
        opened(old_db) as store,
    ):
        assert await stored_version(store) == schema.LATEST
        await store.release_claims()  # what start-up does: the crashed bridge's lease ends
        config = WebhookSink.model_validate({
            "name": "pager", "kind": "webhook", "url": receiver.url, "secret": SECRET,
            "timeout": "2s"})
        sink = build_sink(config, session, store)
        workers = DeliveryWorkers(store=store, sinks={"pager": sink},
                                  policies={"pager": RetryPolicy()}, metrics=Metrics(),
                                  clock=lambda: datetime.now(UTC))
        workers.start()
        try:
            await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 3, within=10)

            async def recorded() -> bool:
                found = [await store.get_delivery(i) for i in pending_ids]
                return all(d is not None and d.status is DeliveryStatus.DELIVERED
                           for d in found)

            await eventually(recorded, within=5, what="the old rows recorded as delivered")
            # A new notification of the same event and sink, from another rule, is a row
            # of its own next to the old one.
            new = Notification(event_id="evt_old_0", rule="page", sink="pager",
                               source="zendesk", job_id="job-0", on=EventKind.TRANSITION,
                               payload={"text": "new", "body": "{}"})
            await store.commit_poll(PollCommit(source="zendesk", notifications=[new]))
            workers.wake()
            await receiver.wait_for(lambda: len(receiver.delivered_ids()) == 4, within=10)
        finally:
            await workers.stop()
        every = {d.id: d for d in await store.list_outbox(None, limit=100)}
    # Each old row went out once, under the id it was first sent with; nothing delivered or
    # dead before was sent again.
    assert sorted(receiver.delivered_ids()[:3]) == sorted(pending_ids)
    assert receiver.delivered_ids()[3] == new.delivery_id != rows[0][0]
    assert all(r.verified for r in receiver.requests)
    assert every[rows[3][0]].status is DeliveryStatus.DELIVERED
    assert every[rows[4][0]].status is DeliveryStatus.DEAD
    assert len(every) == 6
