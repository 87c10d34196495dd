"""Pure retry decisions: when a failed delivery is tried again, and when it is dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.config.schema import RetryPolicy
from bridge.errors import PermanentDelivery, RetryableDelivery
from bridge.model import Delivery, EventKind, Notification
from bridge.retries import StepKind, next_step
from bridge.scheduler import backoff_delay

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def delivery(attempts: int, age: timedelta = timedelta(0)) -> Delivery:
    notification = Notification(event_id="evt_1", rule="r", sink="pager", source="s",
                                job_id="j", payload={"body": "{}"}, on=EventKind.TRANSITION)
    return Delivery(id=notification.delivery_id, notification=notification,
                    created_at=NOW - age, attempts=attempts)


@pytest.mark.parametrize(
    ("attempts_before", "expected_wait"),
    [
        (0, timedelta(seconds=5)),
        (1, timedelta(minutes=5)),
        (2, timedelta(minutes=30)),
        (3, timedelta(hours=1)),
        (4, timedelta(hours=2)),
        (5, timedelta(hours=3)),
        (6, timedelta(hours=4)),
        (7, timedelta(hours=6)),
        (8, timedelta(hours=7)),
    ],
)
def test_retryable_failures_follow_the_default_schedule(
    attempts_before: int, expected_wait: timedelta
) -> None:
    step = next_step(policy=RetryPolicy(), delivery=delivery(attempts_before),
                     error=RetryableDelivery("503"), now=NOW)
    assert step.kind is StepKind.RETRY
    assert step.at == NOW + expected_wait


def test_retry_after_longer_than_the_schedule_is_honoured() -> None:
    step = next_step(policy=RetryPolicy(), delivery=delivery(0),
                     error=RetryableDelivery("429", retry_after=42.5), now=NOW)
    assert step.at == NOW + timedelta(seconds=42.5)


def test_jitter_moves_a_retry_by_at_most_ten_percent() -> None:
    early = next_step(policy=RetryPolicy(), delivery=delivery(1),
                      error=RetryableDelivery("503"), now=NOW, jitter=-1.0)
    late = next_step(policy=RetryPolicy(), delivery=delivery(1),
                     error=RetryableDelivery("503"), now=NOW, jitter=1.0)
    assert early.at == NOW + timedelta(minutes=4, seconds=30)
    assert late.at == NOW + timedelta(minutes=5, seconds=30)


def test_permanent_failure_is_dead_lettered_at_once() -> None:
    step = next_step(policy=RetryPolicy(), delivery=delivery(0),
                     error=PermanentDelivery("HTTP 404"), now=NOW)
    assert step.kind is StepKind.DEAD_PERMANENT


def test_last_allowed_attempt_dead_letters() -> None:
    policy = RetryPolicy(attempts=3)
    assert next_step(policy=policy, delivery=delivery(1), error=RetryableDelivery("x"),
                     now=NOW).kind is StepKind.RETRY
    assert next_step(policy=policy, delivery=delivery(2), error=RetryableDelivery("x"),
                     now=NOW).kind is StepKind.DEAD_EXHAUSTED


def test_retry_past_max_age_dead_letters() -> None:
    policy = RetryPolicy(max_age=timedelta(hours=1))
    step = next_step(policy=policy, delivery=delivery(2, age=timedelta(minutes=45)),
                     error=RetryableDelivery("x"), now=NOW)
    assert step.kind is StepKind.DEAD_EXHAUSTED


def test_custom_schedule_repeats_its_last_wait() -> None:
    policy = RetryPolicy(schedule=[timedelta(seconds=1), timedelta(seconds=2)], attempts=10)
    step = next_step(policy=policy, delivery=delivery(6), error=RetryableDelivery("x"), now=NOW)
    assert step.at == NOW + timedelta(seconds=2)


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [
        (0, None, timedelta(0)),
        (1, None, timedelta(seconds=30)),
        (2, None, timedelta(seconds=60)),
        (3, None, timedelta(seconds=120)),
        (10, None, timedelta(minutes=5)),
        (1, 0.62, timedelta(seconds=30)),
        (1, 90.0, timedelta(seconds=90)),
    ],
)
def test_a_down_source_backs_off_exponentially_honouring_retry_after(
    failures: int, retry_after: float | None, expected: timedelta
) -> None:
    assert backoff_delay(failures, timedelta(seconds=30), retry_after) == expected


def test_the_default_policy_makes_ten_attempts_within_about_a_day() -> None:
    policy = RetryPolicy()
    attempts, at = 1, NOW
    while True:
        step = next_step(policy=policy, delivery=delivery(attempts - 1, age=at - NOW),
                         error=RetryableDelivery("503"), now=NOW)
        if step.kind is not StepKind.RETRY:
            break
        assert step.at is not None
        at = NOW + (step.at - NOW) + (at - NOW)
        attempts += 1
    assert attempts == 10
    assert timedelta(hours=23) < at - NOW < timedelta(hours=24)
