"""Hostile and broken answers from sinks: every delivery ends delivered, retried at a bounded
time, or dead, and nothing else escapes.

Hypothesis feeds the webhook sink and the Slack sink (Web API and incoming webhook) hundreds
of answers over a real socket through ONE local `HostileServer` per test: fuzzed statuses,
`Retry-After` values (`inf`, `-5`, `1e20`, `nan`, HTTP dates, garbage), rate-limit reset
headers, bodies that are not JSON, not UTF-8, not an object, or cut off mid-way. Whatever
comes back from `send` must be success or a `DeliveryError` with a one-line readable
message, and `next_step` on that error must give a dead letter or a retry no later than the
sink's `max_retry_after` (or its retry schedule, if that is longer).

Then the same through the real delivery workers and a real store: for each named hostile
answer one row goes to the hostile sink and one to a healthy receiver; the hostile row ends
delivered, pending with a bounded retry time, or dead, no log record carries a traceback,
and the healthy receiver gets every one of its rows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.schema import RetryPolicy, SinkBase, SlackSink, WebhookSink
from bridge.deliver import DeliveryWorkers
from bridge.errors import DeliveryError
from bridge.metrics import Metrics
from bridge.model import Delivery, DeliveryStatus, EventKind, Notification
from bridge.retries import StepKind, next_step
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.sinks import build_sink
from bridge.sinks.base import Sink
from bridge.sinks.retry import SLACK_ERRORS
from bridge.sinks.slack import SlackNotifier
from bridge.store import open_store
from bridge.store.base import PollCommit, Store
from tests import store_fixtures
from tests.crash_support import SECRET, eventually
from tests.hostile_support import Answer, HostileServer

SLACK_TOKEN = "xoxb-hostile-token"
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MAX_RETRY_AFTER = timedelta(minutes=30)
SCHEDULE_STEP = timedelta(minutes=10)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


# --- the sinks under test -------------------------------------------------------------------


def webhook_config(url: str) -> WebhookSink:
    return WebhookSink.model_validate({
        "name": "hostile", "kind": "webhook", "url": f"{url}/hook", "secret": SECRET,
        "timeout": "1s", "max_retry_after": "30m", "retry": {"schedule": ["10m"]}})


def slack_config(url: str, *, incoming: bool = False) -> SlackSink:
    way: dict[str, Any] = ({"webhook_url": f"{url}/services/T0/B0/secret"} if incoming else
                           {"token": SLACK_TOKEN, "channel": "#ops", "base_url": f"{url}/api/"})
    # min_interval 0 is where a 429 with `Retry-After: 0` used to spin.
    return SlackSink.model_validate({
        "name": "hostile", "kind": "slack", "timeout": "1s", "min_interval": "0s",
        "max_retry_after": "30m", "retry": {"schedule": ["10m"]}, **way})


SINK_KINDS = ("webhook", "slack-web", "slack-incoming")


def sink_config(kind: str, url: str) -> SinkBase:
    if kind == "webhook":
        return webhook_config(url)
    return slack_config(url, incoming=kind == "slack-incoming")


def delivery(sink: str = "hostile", job: str | None = None) -> Delivery:
    n = next(_ids)
    notification = Notification(
        event_id=f"evt_{n}", rule="r", sink=sink, source="zendesk", job_id=job or f"job-{n}",
        on=EventKind.TRANSITION, payload={"text": f"message {n}", "body": json.dumps({"n": n})},
        state="failed", terminal=True)
    return Delivery(id=notification.delivery_id, notification=notification,
                    created_at=NOW - timedelta(minutes=1))


# --- what every outcome must satisfy --------------------------------------------------------


def retry_bound(config: SinkBase) -> timedelta:
    """The latest a retry may be scheduled: the sink's max_retry_after, or its schedule's
    step (with 10% jitter) when that is longer."""
    longest_step = max(config.retry.schedule) * 1.1
    return max(config.max_retry_after, longest_step)


def assert_readable(exc: DeliveryError) -> None:
    message = str(exc)
    assert message.strip(), f"empty message from {type(exc).__name__}"
    assert message.isprintable(), f"unprintable message: {message!r}"
    assert len(message) <= 600, f"message too long to read: {len(message)} chars"
    assert "Traceback" not in message
    assert SLACK_TOKEN not in message and "secret" not in message.replace("'secret'", "")


def assert_settles(config: SinkBase, sent: Delivery, error: DeliveryError | None) -> None:
    """Delivered (no error), or a step that is a dead letter or a bounded retry."""
    if error is None:
        return
    assert_readable(error)
    step = next_step(policy=config.retry, delivery=sent, error=error, now=NOW, jitter=1.0,
                     max_retry_after=config.max_retry_after)
    if step.kind is StepKind.RETRY:
        assert step.at is not None
        assert NOW < step.at <= NOW + retry_bound(config), (step, error)
    else:
        assert step.kind in (StepKind.DEAD_PERMANENT, StepKind.DEAD_EXHAUSTED)


async def send_once(sink: Sink, sent: Delivery) -> DeliveryError | None:
    """Send one row; only a DeliveryError may come back (anything else fails the test)."""
    try:
        await sink.send(sent)
    except DeliveryError as exc:
        return exc
    return None


# --- strategies -----------------------------------------------------------------------------

STATUSES = st.one_of(
    st.sampled_from([200, 201, 204, 301, 304, 400, 401, 403, 404, 408, 410, 413, 425, 429,
                     500, 502, 503, 504]),
    st.integers(min_value=100, max_value=599))
RETRY_AFTER_VALUES = st.sampled_from([
    "0", "1", "0.62", "-5", "inf", "-inf", "Infinity", "1e20", "1e999", "nan", "NaN", "",
    "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2099 07:28:00 GMT",
    "Sun, 06 Nov 1994 08:49:37", "99999999999999999999999", "\u00e9", "1, 2"])
RESET_NAMES = st.sampled_from(["RateLimit-Reset", "X-RateLimit-Reset", "X-Rate-Limit-Reset"])
HEADERS = st.one_of(
    st.just({}),
    RETRY_AFTER_VALUES.map(lambda v: {"Retry-After": v}),
    st.tuples(RESET_NAMES, st.one_of(RETRY_AFTER_VALUES, st.just("4102444800"))).map(
        lambda pair: {pair[0]: pair[1]}),
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=latin-1",
                                 "text/html", "text/plain", "application/gzip", None])
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=10)),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                              max_size=3),
    max_leaves=6)
SLACK_ANSWERS = st.one_of(
    st.just({"ok": True, "channel": "C0OPS", "ts": "1700000000.000100"}),
    st.just({"ok": True}),
    st.builds(lambda e: {"ok": False, "error": e},
              st.one_of(st.sampled_from(sorted(SLACK_ERRORS)), st.sampled_from(
                  ["message_not_found", "thread_not_found", "ratelimited", f"{SLACK_TOKEN}"]),
                        st.text(max_size=20))),
    st.fixed_dictionaries({"ok": JSON_VALUES, "channel": JSON_VALUES, "ts": JSON_VALUES}),
)
BODIES = st.one_of(
    st.just(b""), st.just(b"ok"), st.just(b"not json {"), st.just(b"\xff\xfe\x00garbage"),
    st.just("{\"ok\": true, \"error\": \"caf\u00e9\"}".encode("latin-1")),
    st.just(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"),
    st.just(b"null"), st.just(b"[1, 2]"), st.just(b"42"), st.just(b'"text"'),
    st.binary(max_size=64),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    SLACK_ANSWERS.map(lambda v: json.dumps(v).encode()),
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    body = draw(BODIES)
    cut = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=max(0, len(body) - 1))))
    return Answer(status=draw(STATUSES), body=body, content_type=draw(CONTENT_TYPES),
                  headers=draw(HEADERS), chunked=draw(st.booleans()),
                  truncate_at=cut if body else None)


# --- the rig: one loop, one server, one session per test ------------------------------------


@dataclass(slots=True)
class Rig:
    runner: asyncio.Runner
    server: HostileServer
    session: aiohttp.ClientSession
    store: Store

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)


async def _open(tmp_path: Path) -> tuple[HostileServer, aiohttp.ClientSession, Store]:
    server = await HostileServer().__aenter__()
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    return server, aiohttp.ClientSession(), store


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    # Hypothesis drives plain functions, so the test owns its event loop.
    with asyncio.Runner() as runner:
        server, session, store = runner.run(_open(tmp_path))
        try:
            yield Rig(runner, server, session, store)
        finally:
            runner.run(session.close())
            runner.run(store.close())
            runner.run(server.__aexit__(None, None, None))


def make_sink(kind: str, rig: Rig) -> Sink:
    config = sink_config(kind, rig.server.url)
    if isinstance(config, SlackSink):
        # No waiting out a 429 in-process: every wait goes back to the outbox, so the
        # bounded retry time is checked for each of them.
        return SlackNotifier(config, rig.session, rig.store, max_wait=0.0)
    return build_sink(config, rig.session, rig.store)


# --- fuzzed answers, one sink at a time -----------------------------------------------------


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_a_fuzzed_answer_is_delivered_a_bounded_retry_or_a_dead_letter(
    kind: str, rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(kind, rig)
    caplog.set_level(logging.WARNING)

    @FUZZ
    @given(answer=answers())
    def send(answer: Answer) -> None:
        rig.server.answer = answer
        sent = delivery()
        error = rig.run(send_once(sink, sent))
        assert_settles(sink.config, sent, error)

    try:
        send()
    finally:
        rig.run(sink.aclose())
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks[0].getMessage()


HOSTILE = {
    "retry-after-inf": Answer(status=429, headers={"Retry-After": "inf"}),
    "retry-after-minus-5": Answer(status=503, headers={"Retry-After": "-5"}),
    "retry-after-1e20": Answer(status=429, headers={"Retry-After": "1e20"}),
    "retry-after-nan": Answer(status=503, headers={"Retry-After": "nan"}),
    "retry-after-zero": Answer(status=429, headers={"Retry-After": "0"}),
    "retry-after-http-date": Answer(status=503,
                                    headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}),
    "retry-after-garbage": Answer(status=429, headers={"Retry-After": "soon, maybe"}),
    "reset-epoch": Answer(status=429, headers={"X-RateLimit-Reset": "99999999999"}),
    "html-502": Answer(status=502, content_type="text/html", body=b"<html>502</html>"),
    "not-json-200": Answer(status=200, content_type="application/json", body=b"ok{"),
    "not-utf8-200": Answer(status=200, content_type="text/plain", body=b"\xff\xfe\xfa"),
    "not-utf8-json": Answer(status=200, body=b'{"ok": true, "x": "\xff"}'),
    "json-list": Answer(status=200, body=b"[1, 2]"),
    "truncated": Answer(status=200, body=b'{"ok": true, "channel": "C0", "ts": "1"}',
                        truncate_at=7),
    "gone-410": Answer(status=410, body=b"gone"),
}


@pytest.mark.parametrize("kind", SINK_KINDS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_named_hostile_answer_settles_with_a_readable_reason(
    kind: str, name: str, rig: Rig
) -> None:
    rig.server.answer = HOSTILE[name]
    sink = make_sink(kind, rig)
    sent = delivery()
    try:
        error = rig.run(send_once(sink, sent))
    finally:
        rig.run(sink.aclose())
    assert_settles(sink.config, sent, error)


async def test_a_slow_answer_past_the_timeout_is_a_retry(tmp_path: Path) -> None:
    async with HostileServer(Answer(delay=5.0)) as server, aiohttp.ClientSession() as session:
        store = open_store(f"sqlite:///{tmp_path}/state.db")
        await store.open()
        try:
            for kind in SINK_KINDS:
                config = sink_config(kind, server.url).model_copy(
                    update={"timeout": timedelta(milliseconds=200)})
                sink = build_sink(config, session, store)
                sent = delivery()
                error = await send_once(sink, sent)
                await sink.aclose()
                assert error is not None and error.retryable, (kind, error)
                assert "timed out" in str(error), (kind, error)
                assert_settles(config, sent, error)
        finally:
            await store.close()


async def test_a_429_with_retry_after_zero_and_no_min_interval_does_not_spin(
    tmp_path: Path,
) -> None:
    # It used to repeat the call at once, forever: the channel's queue never moved again.
    async with (HostileServer(Answer(status=429, headers={"Retry-After": "0"})) as server,
                aiohttp.ClientSession() as session):
        store = open_store(f"sqlite:///{tmp_path}/state.db")
        await store.open()
        config = slack_config(server.url)
        sink = build_sink(config, session, store)
        try:
            sent = delivery()
            error = await asyncio.wait_for(send_once(sink, sent), 30)
        finally:
            await sink.aclose()
            await store.close()
    assert error is not None and error.retryable
    assert 1 < len(server.requests) <= 20
    assert_settles(config, sent, error)


async def test_the_slack_sink_honours_its_own_max_retry_after(tmp_path: Path) -> None:
    async with (HostileServer(Answer(status=429, headers={"Retry-After": "100000"})) as server,
                aiohttp.ClientSession() as session):
        store = open_store(f"sqlite:///{tmp_path}/state.db")
        await store.open()
        config = slack_config(server.url).model_copy(
            update={"max_retry_after": timedelta(seconds=90)})
        sink = SlackNotifier(config, session, store, max_wait=60.0)
        try:
            error = await send_once(sink, delivery())
        finally:
            await sink.aclose()
            await store.close()
    # Clamped to the sink's 90 s (not the 1 h default), which is past the 60 s it waits.
    assert error is not None and error.retry_after == pytest.approx(90.0, abs=1.0)


@pytest.mark.parametrize("value", ["8d", "30d", "P14D"])
def test_max_retry_after_is_capped_at_seven_days(value: str) -> None:
    with pytest.raises(ValueError, match="at most 7d"):
        WebhookSink.model_validate({"name": "w", "kind": "webhook", "url": "http://x/",
                                    "max_retry_after": value})
    assert WebhookSink.model_validate({"name": "w", "kind": "webhook", "url": "http://x/",
                                       "max_retry_after": "7d"}).max_retry_after == \
        timedelta(days=7)


# --- through the delivery workers and a real store ------------------------------------------


store = store_fixtures.sqlite_store


def _settled(row: Delivery | None, now: datetime, bound: timedelta) -> bool:
    if row is None:
        return False
    if row.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
        return True
    # Pending again after a recorded failure, due no later than the bound (a row still under
    # its claim lease has no recorded failure yet).
    return (row.attempts >= 1 and row.last_error is not None
            and row.next_attempt_at is not None and row.next_attempt_at <= now + bound)


@pytest.mark.parametrize("kind", ["webhook", "slack-web"])
async def test_every_row_to_a_hostile_sink_settles_and_a_healthy_sink_gets_all_of_its_own(
    kind: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with (HostileServer() as server, WebhookReceiver(secret=SECRET) as healthy,
                aiohttp.ClientSession() as session):
        hostile_config = sink_config(kind, server.url)
        healthy_config = WebhookSink.model_validate({
            "name": "healthy", "kind": "webhook", "url": healthy.url, "secret": SECRET})
        sinks = {"hostile": build_sink(hostile_config, session, store),
                 "healthy": build_sink(healthy_config, session, store)}
        workers = DeliveryWorkers(
            store=store, sinks=sinks, metrics=Metrics(), clock=lambda: datetime.now(UTC),
            policies={"hostile": hostile_config.retry, "healthy": RetryPolicy()})
        workers.start()
        settled: dict[str, Delivery] = {}
        try:
            for index, name in enumerate(sorted(HOSTILE)):
                server.answer = HOSTILE[name]
                rows = [delivery("hostile", job=f"job-{name}"),
                        delivery("healthy", job=f"job-{name}")]
                await store.commit_poll(PollCommit(
                    source="zendesk", notifications=[r.notification for r in rows]))
                workers.wake()

                async def done(row: Delivery = rows[0]) -> bool:
                    found = await store.get_delivery(row.id)
                    return _settled(found, datetime.now(UTC), retry_bound(hostile_config))

                await eventually(done, within=15, what=f"the row answered {name} to settle")
                found = await store.get_delivery(rows[0].id)
                assert found is not None
                settled[name] = found
                await healthy.wait_for(lambda n=index + 1: len(healthy.delivered_ids()) >= n,
                                       within=10)
        finally:
            await workers.stop()
    assert len(set(healthy.delivered_ids())) == len(HOSTILE)
    assert all(r.verified for r in healthy.requests)
    # The receiver asked for `inf` / 1e20 s: retried after the sink's maximum, not never.
    assert settled["retry-after-inf"].status is DeliveryStatus.PENDING
    assert settled["gone-410"].status is DeliveryStatus.DEAD
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks[0].getMessage()
