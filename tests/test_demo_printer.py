"""The demo's printer: one line per event and per message by default, whole messages with
--verbose, a queued message not shown as arrived, and a dead letter as a FAILED line whose
retry hint works in the demo (the dashboard, not `bridge outbox` against a temporary state)."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime

from bridge.checks import sample_event
from bridge.demo import Printer
from bridge.model import Delivery, DeliveryStatus, EventKind, Notification
from bridge.pipeline import PollOutcome

EVENT = sample_event(EventKind.TRANSITION, source="jtl")
NOTE = Notification(event_id=EVENT.id, rule="job-failed", sink="pager", source="jtl",
                    job_id="8b72", on=EventKind.TRANSITION,
                    payload={"text": "t", "body": '{"routing_key": "x"}'})


def printed(printer: Printer, outcome: PollOutcome) -> str:
    printer.release()
    printer(outcome)
    assert isinstance(printer.out, io.StringIO)
    return printer.out.getvalue()


def outcome() -> PollOutcome:
    return PollOutcome(source="jtl", events=[EVENT], notifications=[NOTE])


def test_by_default_one_line_per_event_and_one_per_rendered_notification() -> None:
    text = printed(Printer(io.StringIO()), outcome())
    event_line, notification_line = text.splitlines()
    assert "transition" in event_line and "┌─" not in text
    assert notification_line == '   ↳ pager: {"routing_key": "x"}'


def test_quiet_prints_events_only() -> None:
    text = printed(Printer(io.StringIO(), quiet=True), outcome())
    assert text.count("\n") == 1 and "transition" in text and "pager" not in text


def test_a_long_message_is_cut_to_one_terminal_line() -> None:
    note = dataclasses.replace(NOTE, payload={"text": "x" * 500 + "\nsecond line"})
    text = printed(Printer(io.StringIO()), PollOutcome(source="jtl", events=[EVENT],
                                                       notifications=[note]))
    line = text.splitlines()[1]
    assert line.endswith("…") and len(line) < 140 and "second line" not in text


def test_verbose_shows_the_message_as_queued_not_as_arrived() -> None:
    text = printed(Printer(io.StringIO(), verbose=True), outcome())
    assert "┌─ job-failed → pager (queued)" in text


def test_a_dead_letter_is_a_failed_line_pointing_at_the_dashboard() -> None:
    delivery = Delivery(id=NOTE.delivery_id, notification=NOTE, created_at=datetime.now(UTC),
                        status=DeliveryStatus.DEAD, attempts=1,
                        last_error="dead_permanent: POST http://127.0.0.1:9/hook: HTTP 410; "
                                   "fix the sink's config or the receiver, then `bridge outbox "
                                   "retry` re-queues it")
    line = Printer(io.StringIO()).dead_letter_line(delivery, "http://127.0.0.1:8080/")
    assert "FAILED" in line and "job-failed → pager" in line and "HTTP 410" in line
    assert line.endswith("dead-lettered, retry it from the dashboard's outbox at "
                         "http://127.0.0.1:8080/")
    assert "bridge outbox retry" not in line
