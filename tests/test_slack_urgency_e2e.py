"""Urgency end to end: outbox -> delivery workers -> Slack sender -> fake Slack.

A backlog of "job started" rows is being sent when a job's failure is committed. The worker
hands Slack a few rows at a time (`SinkCapabilities.claim_batch`), so the failure is claimed
with the next batch, together with its job's still-waiting start row (the claim gives a
job's rows its most urgent row's urgency), and the sender posts the failure in its place:
one root showing the failure, with its thread reply, long before the backlog is through.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bridge.model import EventKind, Notification, Priority
from bridge.store.base import PollCommit
from bridge.store.sqlite import SqliteStore
from tests.slack_delivery_support import delivering_to_fake_slack
from tests.test_slack_urgency import until


def row(job: str, text: str, *, state: str = "running",
        priority: Priority = Priority.LOW) -> Notification:
    return Notification(event_id=f"evt_{job}_{state}", rule="jobs", sink="ops-slack",
                        source="zendesk", job_id=job, payload={"text": text},
                        on=EventKind.TRANSITION, terminal=state == "failed", state=state,
                        priority=priority)


async def test_a_failure_committed_during_a_backlog_is_posted_next_in_its_jobs_place(
    tmp_path: Path,
) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    await store.open()
    twenty_a_second = {"post_per_second": 20, "post_burst": 1}
    try:
        async with delivering_to_fake_slack(store, tmp_path, rate_limits=twenty_a_second) as (
                slack, workers, _):
            backlog = [row(f"job{i:02d}", f"job{i:02d} started") for i in range(30)]
            backlog.append(row("jobz", "jobz started"))
            await store.commit_poll(PollCommit(source="zendesk", notifications=backlog,
                                               at=datetime.now(UTC)))
            workers.start()

            def posts() -> list[str]:
                return [str(c.body["text"]) for c in slack.calls_to("chat.postMessage")
                        if "thread_ts" not in c.body]

            await until(lambda: len(posts()) >= 1, "the backlog being sent")
            failure = row("jobz", "jobz failed", state="failed", priority=Priority.HIGH)
            await store.commit_poll(PollCommit(source="zendesk", notifications=[failure],
                                               at=datetime.now(UTC)))
            workers.wake()
            await until(lambda: len(posts()) == 31, "every job's root")
            assert "jobz started" not in posts()
            assert posts().index("jobz failed") < 15
            root = next(m for m in slack.roots("#ops") if m.text == "jobz failed")
            assert [r.text for r in slack.replies("#ops", root.ts)] == ["jobz failed"]
    finally:
        await store.close()
