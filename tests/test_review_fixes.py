"""Regression tests for the review fixes of commit 78cd475, over real sockets and a real store.

Each test stages the fault the review found (a locked SQLite file under a delivery worker, a
Slack call that times out, a finished job named in `ids` past `retain`, a week of delivered
rows, a `retry` of a row being sent) with the real SQLite store, the real sinks and the
simulators in `bridge.simulators`, and checks what the fix promises.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.cli import main
from bridge.config import parse_config
from bridge.config.schema import SinkBase
from bridge.deliver import CLAIM_LEASE, DeliveryWorkers
from bridge.errors import StoreError
from bridge.metrics import Metrics
from bridge.model import Delivery, DeliveryStatus, EventKind, Notification
from bridge.pipeline import PollOutcome
from bridge.simulators.esales import EsalesSimulator
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import Reply, WebhookReceiver
from bridge.sinks import build_sink
from bridge.store.base import PollCommit
from bridge.store.sqlite import SqliteStore
from tests.config_support import pager_sink, slack_sink
from tests.crash_support import eventually, opened, state_url, write_config

SLACK_TOKEN = "xoxb-fake-token"
IMPORT_ID = "5537431447739019570"


class ManualClock:
    """Wall-clock time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def note(n: int, *, sink: str = "pager", job_id: str | None = "job-a",
         on: EventKind = EventKind.TRANSITION, terminal: bool = False) -> Notification:
    return Notification(event_id=f"evt_{sink}_{n}", rule="any", sink=sink, source="zendesk",
                        job_id=job_id, on=on, terminal=terminal,
                        payload={"text": f"message {n}", "body": "{}"})


async def queue(store: SqliteStore, notes: Sequence[Notification], at: datetime) -> None:
    """Commit `notes` to the outbox, oldest first, a millisecond apart, all due at `at`."""
    first = at - timedelta(milliseconds=len(notes))
    for index, n in enumerate(notes):
        await store.commit_poll(PollCommit(source="zendesk", notifications=[n],
                                           at=first + timedelta(milliseconds=index)))


def sink_config(tmp_path: Path, text: str) -> SinkBase:
    return parse_config(text, str(tmp_path / "rules.toml"), {}).sinks[0]


@asynccontextmanager
async def workers_for(
    tmp_path: Path, sink_text: str, *, clock: Callable[[], datetime], busy_timeout: float = 5.0
) -> AsyncIterator[tuple[SqliteStore, DeliveryWorkers]]:
    """A real SQLite store and the delivery workers of the one sink `sink_text` configures;
    the workers start once the caller has queued its rows (`workers.start()`)."""
    config = sink_config(tmp_path, sink_text)
    store = SqliteStore(str(tmp_path / "state.db"), busy_timeout=busy_timeout)
    await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            sink = build_sink(config, session, store)
            workers = DeliveryWorkers(store=store, sinks={config.name: sink},
                                      policies={config.name: config.retry},
                                      metrics=Metrics(), clock=clock)
            try:
                yield store, workers
            finally:
                await workers.stop()
                await sink.aclose()
    finally:
        await store.close()


async def status_of(store: SqliteStore, delivery_id: str) -> Delivery:
    found = await store.get_delivery(delivery_id)
    assert found is not None, delivery_id
    return found


# --- 1. a store error while recording an outcome ------------------------------------------


async def test_a_store_error_while_recording_a_failure_does_not_end_the_sinks_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bridge.deliver")
    clock = ManualClock()
    async with WebhookReceiver() as receiver:
        # Slow enough that the test holds the file's write lock before the 503 comes back.
        receiver.script([Reply(status=503, delay=0.5)])
        sink = f"""
[[sinks]]
name = "pager"
kind = "webhook"
url = "{receiver.url}"
retry = {{ schedule = ["1s"], attempts = 5 }}
"""
        async with workers_for(tmp_path, sink, clock=clock, busy_timeout=0.2) as (store, workers):
            row = note(1)
            await queue(store, [row], clock())
            workers.start()
            await receiver.wait_for(lambda: len(receiver.requests) == 1)
            # Another process writing to the file: `mark_retry` waits out the busy timeout.
            locker = sqlite3.connect(str(tmp_path / "state.db"), isolation_level=None)
            try:
                locker.execute("BEGIN EXCLUSIVE")

                async def recording_failed() -> bool:
                    return any(r.exc_info is not None and isinstance(r.exc_info[1], StoreError)
                               for r in caplog.records)

                await eventually(recording_failed, within=5,
                                 what="mark_retry to fail on the locked file")
                locker.execute("ROLLBACK")
            finally:
                locker.close()
            # The row stays leased after the failed write; it comes back after its lease.
            clock.advance(CLAIM_LEASE + timedelta(seconds=1))
            workers.wake()
            await receiver.wait_for(lambda: receiver.delivered_ids() == [row.delivery_id])

            async def delivered() -> bool:
                found = await status_of(store, row.delivery_id)
                return found.status is DeliveryStatus.DELIVERED

            await eventually(delivered, within=5, what="the row recorded as delivered")
    assert [r.status for r in receiver.requests] == [503, 200]


# --- 2. Slack `update` mode: what a later successful edit supersedes ----------------------


def ops_slack(slack: FakeSlack) -> str:
    # A short timeout: a held Slack answer fails one call as retryable ("timed out"); long
    # enough that an answered call gets its answer in time on a loaded machine.
    return slack_sink(slack.api_url, token=SLACK_TOKEN, min_interval="10ms", timeout="1s",
                      retry={"schedule": ["1h"], "attempts": 5})


async def first_call_times_out_second_succeeds(
    tmp_path: Path, notes: Sequence[Notification]
) -> list[Delivery]:
    """Queue `notes` (one claim), let Slack time out the first call and answer the second;
    the rows afterwards, in queue order."""
    clock = ManualClock()
    async with (
        FakeSlack(token=SLACK_TOKEN, channels={"#ops": "C0OPS"}) as slack,
        workers_for(tmp_path, ops_slack(slack), clock=clock) as (store, workers),
    ):
        await queue(store, notes, clock())
        # Only the first call is kept waiting (it times out on the client); the second is
        # answered at once: releasing both once the second arrived could come after the
        # second's own timeout on a loaded machine, and then both failed.
        slack.hold(calls=1)
        workers.start()
        await slack.wait_for(lambda: slack.held == 1 and len(slack.calls) == 1)
        assert slack.calls[0].status == 200
        slack.release()

        async def settled() -> bool:
            rows = [await status_of(store, n.delivery_id) for n in notes]
            return all(r.status is DeliveryStatus.DELIVERED or r.attempts for r in rows)

        await eventually(settled, within=5, what="both rows sent once")
        # Stopping waits for the outcomes still being recorded (a superseded row's too).
        await workers.stop()
        return [await status_of(store, n.delivery_id) for n in notes]


async def test_a_failed_terminal_edit_is_kept_for_retry_though_a_later_edit_succeeded(
    tmp_path: Path,
) -> None:
    final = note(1, sink="ops-slack", terminal=True)
    rerun = note(2, sink="ops-slack")
    failed, later = await first_call_times_out_second_succeeds(tmp_path, [final, rerun])
    assert later.status is DeliveryStatus.DELIVERED
    assert (failed.status, failed.attempts) == (DeliveryStatus.PENDING, 1)
    assert "timed out" in (failed.last_error or "")


async def test_a_failed_source_notification_is_not_superseded_by_a_later_one_in_update_mode(
    tmp_path: Path,
) -> None:
    # Source events have no job: they are posts, never edits of one message.
    down = note(1, sink="ops-slack", job_id=None, on=EventKind.SOURCE_DOWN)
    up = note(2, sink="ops-slack", job_id=None, on=EventKind.SOURCE_UP)
    failed, later = await first_call_times_out_second_succeeds(tmp_path, [down, up])
    assert later.status is DeliveryStatus.DELIVERED
    assert (failed.status, failed.attempts) == (DeliveryStatus.PENDING, 1)
    assert "timed out" in (failed.last_error or "")


# --- 3. config `ids` past `retain` --------------------------------------------------------


async def test_a_finished_config_id_past_retain_is_not_announced_again(tmp_path: Path) -> None:
    clock = ManualClock()
    outcomes: list[PollOutcome] = []
    polled = asyncio.Event()

    def observe(outcome: PollOutcome) -> None:
        outcomes.append(outcome)
        polled.set()

    async with EsalesSimulator(api_key="k") as esales:
        esales.add_import(IMPORT_ID, status="SUCCESS")
        text = f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
[[sources]]
name = "esales"
kind = "esales"
base_url = "{esales.base_url}"
api_key = "k"
interval = "1h"
retain = "1s"
ids = ["{IMPORT_ID}"]
"""
        config = parse_config(text, str(tmp_path / "rules.toml"), {})
        async with Bridge(config, clock=clock, serve_http=False, observers=[observe],
                          drain_timeout=1.0) as bridge:
            async with asyncio.timeout(10):
                await polled.wait()  # the start-up poll
            first = [(e.on, e.job.id if e.job else None) for o in outcomes for e in o.events]
            later: list[EventKind] = []
            for _ in range(3):
                clock.advance(timedelta(seconds=5))
                outcome = await bridge.pipeline.poll("esales")
                later.extend(e.on for e in outcome.events)
    assert first == [(EventKind.APPEARED, IMPORT_ID)]
    assert later == []


# --- 4 and 5. `bridge outbox` -------------------------------------------------------------


PAGER = pager_sink()


def outbox(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["outbox", "--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_outbox_lists_pending_and_dead_rows_behind_more_than_500_newer_delivered_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, PAGER)
    now = datetime.now(UTC)
    pending, dead = note(1, job_id="job-p"), note(2, job_id="job-d")
    delivered = [note(100 + n, job_id=f"job-{n}") for n in range(501)]

    async def seed() -> None:
        async with opened(state_url(config)) as store:
            await store.commit_poll(PollCommit(source="zendesk", notifications=[pending, dead],
                                               at=now - timedelta(hours=2)))
            await store.mark_dead(dead.delivery_id, "dead_permanent: HTTP 404", now)
            await store.commit_poll(PollCommit(source="zendesk", notifications=delivered,
                                               at=now - timedelta(hours=1)))
            await store.mark_delivered_many([(n.delivery_id, now) for n in delivered])

    asyncio.run(seed())
    code, out, _ = outbox(capsys, config)
    assert code == 0
    assert pending.delivery_id in out
    assert dead.delivery_id in out
    assert len(out.splitlines()) == 3  # the header and the two rows


def test_outbox_retry_of_a_row_being_sent_leaves_it_alone_and_says_it_is_being_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, PAGER)
    now = datetime.now(UTC)
    row = note(1)

    async def seed_and_claim() -> list[Delivery]:
        async with opened(state_url(config)) as store:
            await store.commit_poll(PollCommit(source="zendesk", notifications=[row],
                                               at=now - timedelta(seconds=1)))
            return await store.claim_due(now, limit=1, lease=timedelta(minutes=1))

    async def claimable() -> list[Delivery]:
        async with opened(state_url(config)) as store:
            return await store.claim_due(datetime.now(UTC), limit=1, lease=timedelta(minutes=1))

    assert [d.id for d in asyncio.run(seed_and_claim())] == [row.delivery_id]
    code, out, err = outbox(capsys, config, "retry", row.delivery_id)
    assert (code, out) == (1, "")
    assert f"delivery {row.delivery_id!r} is being sent right now" in err
    assert "already delivered" not in err
    # Not re-queued: a second sender cannot claim it while the first holds it.
    assert asyncio.run(claimable()) == []
