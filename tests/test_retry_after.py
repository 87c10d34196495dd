"""The one Retry-After / rate-limit reader (bridge.retry_after) and what sources, sinks and
the retry policy make of hostile values: `inf`, `-5`, `1e20`, `NaN`, dates, garbage."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.schema import RetryPolicy, SlackSink, WebhookSink
from bridge.errors import RetryableDelivery
from bridge.model import Delivery, EventKind, Notification
from bridge.retries import StepKind, next_step
from bridge.retry_after import clamp, parse_retry_after, retry_delay
from bridge.scheduler import backoff_delay
from bridge.sinks.retry import Verdict, classify, classify_slack
from bridge.sinks.slack_sender import ChannelSender, RateLimited
from bridge.sources.verdicts import status_error

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
HOUR = 3600.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0.62", 0.62), ("0", 0.0), (" 30 ", 30.0), ("-5", 0.0), ("-3", 0.0),
     ("inf", HOUR), ("Infinity", HOUR), ("1e20", HOUR), ("9" * 400, HOUR), ("7200", HOUR),
     ("nan", None), ("NaN", None), ("soon", None), ("1_000", None), ("0x10", None),
     ("", None), ("   ", None), (None, None),
     ("Mon, 23 Nov 2026 10:01:00 GMT", 60.0), ("Mon, 23 Nov 2026 10:00:30 GMT", 30.0),
     ("Mon, 23 Nov 2026 09:00:00 GMT", 0.0), ("Fri, 31 Dec 9999 23:59:59 GMT", HOUR),
     ("Mon, 23 Nov 2026 10:00:00", 0.0), ("Mon, 32 Nov 2026 10:00:00 GMT", None)],
)
def test_retry_after_is_seconds_or_an_http_date_clamped_to_the_maximum(
    value: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(value, now=NOW, maximum=HOUR) == seconds


@given(st.text(max_size=60))
def test_any_retry_after_text_gives_none_or_a_finite_bounded_wait(value: str) -> None:
    seconds = parse_retry_after(value, now=NOW, maximum=600)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= 600)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_number_is_clamped_or_refused(value: float) -> None:
    seconds = clamp(value, 600)
    if math.isnan(value):
        assert seconds is None
    else:
        assert seconds is not None and 0 <= seconds <= 600


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "5"}, 5.0), ({"retry-after": "5", "RateLimit-Reset": "50"}, 5.0),
     ({"RateLimit-Reset": "50"}, 50.0), ({"X-RateLimit-Reset": "12.5"}, 12.5),
     ({"x-rate-limit-reset": "7"}, 7.0),
     # GitHub style: the reset as Unix epoch seconds.
     ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 90)}, 90.0),
     ({"X-RateLimit-Reset": str(int(NOW.timestamp()) - 90)}, 0.0),
     ({"Retry-After": "garbage", "X-RateLimit-Reset": "3"}, 3.0),
     ({"X-RateLimit-Reset": "inf"}, HOUR), ({"X-RateLimit-Reset": "soon"}, None),
     ({}, None), (None, None)],
)
def test_a_rate_limit_reset_header_is_read_when_there_is_no_retry_after(
    headers: dict[str, str] | None, seconds: float | None
) -> None:
    assert retry_delay(headers, now=NOW, maximum=HOUR) == seconds


@pytest.mark.parametrize("value", ["inf", "-5", "1e20", "nan", "garbage",
                                   "Mon, 23 Nov 2026 10:01:00 GMT", "1e999"])
def test_sink_classification_never_yields_an_unbounded_wait(value: str) -> None:
    for outcome in (classify(429, {"Retry-After": value}, max_retry_after=HOUR),
                    classify_slack("ratelimited", 200, {"Retry-After": value})):
        assert outcome.verdict is Verdict.RETRY
        wait = outcome.retry_after
        assert wait is None or (math.isfinite(wait) and 0 <= wait <= HOUR)


def test_sinks_have_a_max_retry_after_setting_with_a_default_of_an_hour() -> None:
    webhook = WebhookSink.model_validate({"name": "w", "kind": "webhook", "url": "http://h/"})
    slack = SlackSink.model_validate({"name": "s", "kind": "slack", "webhook_url": "http://h/",
                                      "max_retry_after": "90s"})
    assert webhook.max_retry_after == timedelta(hours=1)
    assert slack.max_retry_after == timedelta(seconds=90)


# --- the retry policy --------------------------------------------------------------------


def delivery(attempts: int = 0, age: timedelta = timedelta(0)) -> Delivery:
    notification = Notification(event_id="evt_1", rule="r", sink="pager", source="s",
                                job_id="j", payload={"body": "{}"}, on=EventKind.TRANSITION)
    return Delivery(id=notification.delivery_id, notification=notification,
                    created_at=NOW - age, attempts=attempts)


@pytest.mark.parametrize("asked", [math.inf, 1e20, 1e300, -5.0, math.nan, -math.inf, 0.0])
def test_next_step_never_overflows_and_honours_at_most_the_sinks_maximum(asked: float) -> None:
    step = next_step(policy=RetryPolicy(), delivery=delivery(),
                     error=RetryableDelivery("429", retry_after=asked), now=NOW,
                     max_retry_after=timedelta(minutes=10))
    assert step.kind is StepKind.RETRY
    assert step.at is not None
    assert NOW + timedelta(seconds=5) <= step.at <= NOW + timedelta(minutes=10)


def test_a_huge_retry_after_is_retried_after_the_maximum_not_before() -> None:
    step = next_step(policy=RetryPolicy(), delivery=delivery(),
                     error=RetryableDelivery("429", retry_after=1e20), now=NOW,
                     max_retry_after=timedelta(minutes=10))
    assert step.at == NOW + timedelta(minutes=10)


def test_a_retry_after_past_the_rows_max_age_dead_letters_it() -> None:
    policy = RetryPolicy(max_age=timedelta(hours=1))
    step = next_step(policy=policy, delivery=delivery(age=timedelta(minutes=50)),
                     error=RetryableDelivery("429", retry_after=math.inf), now=NOW,
                     max_retry_after=timedelta(hours=2))
    assert step.kind is StepKind.DEAD_EXHAUSTED


@given(st.floats(allow_nan=True, allow_infinity=True),
       st.integers(min_value=0, max_value=20),
       st.floats(min_value=-1, max_value=1))
def test_next_step_is_total(asked: float, attempts: int, jitter: float) -> None:
    step = next_step(policy=RetryPolicy(), delivery=delivery(attempts),
                     error=RetryableDelivery("x", retry_after=asked), now=NOW, jitter=jitter,
                     max_retry_after=timedelta(hours=1))
    if step.kind is StepKind.RETRY:
        assert step.at is not None
        assert NOW < step.at <= NOW + timedelta(hours=24)


# --- the Slack channel sender ------------------------------------------------------------


class VirtualTime:
    """The sender's injected clock and sleep: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def rate_limited_once(retry_after: float | None) -> Callable[[], Awaitable[str]]:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("HTTP 429", retry_after)
        return "sent"

    return call


@pytest.mark.parametrize("asked", [math.inf, 1e20, 3600.0])
async def test_the_slack_sender_hands_back_a_huge_wait_at_once(asked: float) -> None:
    time = VirtualTime()
    sender = ChannelSender("c", min_interval=1.0, max_wait=30.0, clock=time.clock,
                           sleep=time.sleep)
    with pytest.raises(RetryableDelivery) as caught:
        await sender.call(rate_limited_once(asked))
    assert time.slept == []
    wait = caught.value.retry_after
    assert wait is not None and math.isfinite(wait) and 30 < wait <= HOUR
    # The channel stays paused for the clamped wait, then works again.
    time.now += HOUR
    assert await sender.call(rate_limited_once(None)) == "sent"
    await sender.aclose()


@pytest.mark.parametrize(("asked", "waited"), [(-5.0, 1.0), (math.nan, 1.0), (None, 1.0),
                                               (2.5, 2.5)])
async def test_the_slack_sender_waits_out_a_short_or_unreadable_wait(
    asked: float | None, waited: float
) -> None:
    time = VirtualTime()
    sender = ChannelSender("c", min_interval=1.0, max_wait=30.0, clock=time.clock,
                           sleep=time.sleep)
    assert await sender.call(rate_limited_once(asked)) == "sent"
    assert time.slept == [waited]
    await sender.aclose()


# --- sources ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("inf", HOUR), ("1e20", HOUR), ("-5", 0.0),
                                                ("0.62", 0.62), ("garbage", None)])
def test_a_source_answer_asks_for_a_bounded_wait_and_backoff_never_overflows(
    value: str, seconds: float | None
) -> None:
    error = status_error(429, "Too Many Requests", b"", {"Retry-After": value},
                         "GET http://api/jobs", {}, ())
    assert error.retry_after == seconds
    delay = backoff_delay(3, timedelta(seconds=30), error.retry_after)
    assert timedelta(minutes=2) <= delay <= timedelta(hours=1)
