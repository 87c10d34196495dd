"""`bridge outbox [list|retry ID|drop ID]` (contract sections 1 and 7) over a real state file.

Each test writes deliveries into a SQLite state file through the store (pending with failed
attempts, dead-lettered, delivered), then runs the command line as a user would and reads
its output and exit code.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.model import Delivery, DeliveryStatus, EventKind, Notification
from bridge.store.base import PollCommit
from tests.crash_support import opened, state_url, write_config

NOW = datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    config: Path
    pending: str
    dead: str
    dead_too: str
    delivered: str


def notification(job_id: str) -> Notification:
    return Notification(event_id=f"evt_{job_id}", rule="job-failed", sink="pager",
                        source="zendesk", job_id=job_id, on=EventKind.TRANSITION,
                        payload={"text": "t", "body": "{}"})


async def _seed(tmp_path: Path) -> Seeded:
    config = write_config(tmp_path, """
[[sinks]]
name = "pager"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
""")
    rows = {name: notification(name) for name in ("job-p", "job-d", "job-e", "job-ok")}
    async with opened(state_url(config)) as store:
        await store.commit_poll(PollCommit(source="zendesk", notifications=list(rows.values()),
                                           at=NOW - timedelta(hours=2)))
        ids = {name: n.delivery_id for name, n in rows.items()}
        await store.mark_retry(ids["job-p"], "POST http://127.0.0.1:9/…: HTTP 503",
                               NOW + timedelta(minutes=5))
        await store.mark_retry(ids["job-p"], "POST http://127.0.0.1:9/…: HTTP 502",
                               NOW + timedelta(minutes=5))
        await store.mark_dead(ids["job-d"], "dead_permanent: HTTP 404", NOW)
        await store.mark_dead(ids["job-e"], "dead_exhausted: timed out", NOW)
        await store.mark_delivered(ids["job-ok"], NOW)
    return Seeded(config=config, pending=ids["job-p"], dead=ids["job-d"],
                  dead_too=ids["job-e"], delivered=ids["job-ok"])


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return asyncio.run(_seed(tmp_path))


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["outbox", "--config", str(config), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def statuses(config: Path) -> dict[str, DeliveryStatus]:
    async def read() -> list[Delivery]:
        async with opened(state_url(config)) as store:
            return await store.list_outbox(None, limit=100)

    return {d.id: d.status for d in asyncio.run(read())}


def test_list_shows_pending_and_dead_rows_with_age_attempts_and_last_error(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, seeded.config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "SINK", "JOB", "AGE", "TRIES", "LAST", "ERROR"]
    pending = next(line for line in lines if seeded.pending in line)
    assert re.search(r"pending\s+pager\s+zendesk/job-p\s+2h\s+2\s+POST .*HTTP 502$", pending)
    dead = next(line for line in lines if seeded.dead in line)
    assert re.search(r"dead\s+pager\s+zendesk/job-d\s+2h\s+1\s+dead_permanent: HTTP 404$", dead)
    assert seeded.delivered not in out


def test_list_is_the_default_action(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, seeded.config)[1] == run(capsys, seeded.config, "list")[1]


def test_list_status_delivered_shows_only_delivered_rows(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, seeded.config, "list", "--status", "delivered")
    assert code == 0
    assert seeded.delivered in out
    assert seeded.pending not in out and seeded.dead not in out


def test_json_gives_every_field_a_script_needs(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, seeded.config, "list", "--json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(out)}
    assert set(rows) == {seeded.pending, seeded.dead, seeded.dead_too}
    dead = rows[seeded.dead]
    assert (dead["status"], dead["sink"], dead["source"], dead["job_id"], dead["attempts"]) == (
        "dead", "pager", "zendesk", "job-d", 1)
    assert dead["last_error"] == "dead_permanent: HTTP 404"
    assert datetime.fromisoformat(dead["created_at"]) < NOW
    assert rows[seeded.pending]["next_attempt_at"] is not None


def test_an_empty_outbox_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    code, out, _ = run(capsys, config)
    assert (code, out.strip()) == (0, "outbox is empty: nothing pending, nothing dead-lettered")


def test_retry_id_requeues_one_dead_delivery(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, seeded.config, "retry", seeded.dead)
    assert (code, out.strip()) == (0, "re-queued 1 delivery")
    assert statuses(seeded.config)[seeded.dead] is DeliveryStatus.PENDING
    assert statuses(seeded.config)[seeded.dead_too] is DeliveryStatus.DEAD


def test_retry_all_requeues_every_dead_delivery(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, seeded.config, "retry", "--all")
    assert (code, out.strip()) == (0, "re-queued 2 deliveries")
    after = statuses(seeded.config)
    assert after[seeded.dead] is after[seeded.dead_too] is DeliveryStatus.PENDING
    assert after[seeded.delivered] is DeliveryStatus.DELIVERED


def test_drop_id_discards_one_delivery(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, seeded.config, "drop", seeded.dead)
    assert (code, out.strip()) == (0, "dropped 1 delivery")
    assert seeded.dead not in statuses(seeded.config)


def test_drop_all_discards_every_dead_delivery_and_nothing_else(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, seeded.config, "drop", "--all")
    assert (code, out.strip()) == (0, "dropped 2 deliveries")
    assert set(statuses(seeded.config)) == {seeded.pending, seeded.delivered}


@pytest.mark.parametrize("action", ["retry", "drop"])
def test_an_unknown_id_exits_1_and_points_at_the_list(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    code, out, err = run(capsys, seeded.config, action, "msg_nosuchdelivery")
    assert code == 1
    assert out == ""
    assert "no delivery 'msg_nosuchdelivery' in the outbox" in err
    assert "bridge outbox list" in err
    assert len(statuses(seeded.config)) == 4


@pytest.mark.parametrize("action", ["retry", "drop"])
def test_retry_or_drop_without_an_id_or_all_exits_1(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    code, _, err = run(capsys, seeded.config, action)
    assert code == 1
    assert "give a delivery ID or --all" in err


def test_retrying_a_delivered_delivery_exits_1_and_says_it_was_delivered(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, seeded.config, "retry", seeded.delivered)
    assert code == 1
    assert f"delivery {seeded.delivered!r} was already delivered; nothing to retry" in err
