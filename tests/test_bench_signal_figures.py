"""bench.signal's reading of the fake Slack's record: message by message, version by version."""

from __future__ import annotations

from typing import Any

from bench.signal_parts import PlannedJob, figures
from bridge.simulators.slack import FakeCall


def job(job_id: str, outcome: str) -> PlannedJob:
    return PlannedJob(source="zendesk", id=job_id, appear=0, run=1, end=2, outcome=outcome)


def call(at: float, method: str, ts: str, text: str, **body: Any) -> FakeCall:
    return FakeCall(method=method, body={"text": text, **body}, headers={}, status=200, at=at,
                    channel="C0OPS", ts=ts)


JOBS = [job("aaa", "succeeded"), job("bbb", "failed")]
CHANGED = {("aaa", "end"): 10.0, ("bbb", "end"): 10.0}


def test_a_job_shown_by_a_digest_edit_counts_from_that_edit() -> None:
    record = [call(5, "chat.postMessage", "1", "📋 *starts*\n🆕 aaa *pending*"),
              call(12, "chat.update", "1", "📋 *starts*\n✅ aaa *succeeded*"),
              call(13, "chat.postMessage", "2", "❌ job bbb: running → *failed*")]
    f = figures(JOBS, CHANGED, record, burst_end=10.0)
    assert (f.final_correct, f.final_after_end) == (2, [2.0, 3.0])
    assert f.accounted == 2


def test_an_edit_that_drops_a_jobs_line_no_longer_shows_it() -> None:
    record = [call(11, "chat.postMessage", "1", "📋 *d*\n✅ aaa *succeeded*"),
              call(12, "chat.update", "1", "📋 *d*\n… and 1 more")]
    f = figures(JOBS[:1], CHANGED, record, burst_end=10.0)
    assert f.final_correct == 0
    assert f.accounted == 1


def test_the_rollup_is_the_first_alert_but_not_the_jobs_message() -> None:
    record = [call(11, "chat.postMessage", "1", "⏳ *Urgent first*\n❌ job bbb: *failed*"),
              call(30, "chat.postMessage", "2", "❌ job bbb: running → *failed*")]
    f = figures(JOBS[1:], CHANGED, record, burst_end=10.0)
    assert (f.alert_latency, f.rolled_up) == ([1.0], 1)
    assert f.final_after_end == [20.0]
