"""The webhook sink against a real local receiver that verifies with `standardwebhooks`."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import pytest
from pydantic import ValidationError

from bridge.checks import sample_event
from bridge.config.schema import WebhookSink
from bridge.errors import PermanentDelivery, RetryableDelivery
from bridge.model import Delivery, EventKind, Notification
from bridge.render import envelope
from bridge.secrets import redact_url
from bridge.simulators.webhook_receiver import MissingVerifier, Reply, WebhookReceiver
from bridge.sinks import build_sink
from bridge.sinks.retry import Verdict, classify, classify_slack
from bridge.sinks.webhook import WebhookNotifier

SECRET = "whsec_" + base64.b64encode(b"webhook test key, not a real one").decode()
# A real default body: every one the receiver records is checked against its schema.
BODY = json.dumps(envelope(sample_event(EventKind.TRANSITION), "job-failed", "8b72 failed"))

ReceiverFactory = Callable[..., Awaitable[WebhookReceiver]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def receivers() -> AsyncIterator[ReceiverFactory]:
    started: list[WebhookReceiver] = []

    async def start(**kwargs: object) -> WebhookReceiver:
        receiver = WebhookReceiver(**kwargs)  # type: ignore[arg-type]
        await receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.close()


def make_sink(session: aiohttp.ClientSession, url: str, **settings: object) -> WebhookNotifier:
    config = WebhookSink.model_validate({"name": "pager", "kind": "webhook", "url": url,
                                         **settings})
    return WebhookNotifier(config, session)


def delivery(event_id: str = "evt_1", body: str = BODY) -> Delivery:
    notification = Notification(event_id=event_id, rule="job-failed", sink="pager",
                                source="zendesk", job_id="8b72", payload={"body": body},
                                on=EventKind.TRANSITION, terminal=True, state="failed")
    return Delivery(id=notification.delivery_id, notification=notification,
                    created_at=datetime.now(UTC))


async def test_signed_request_passes_the_reference_verifier(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers(secret=SECRET)
    assert hook.verifier == "standardwebhooks"
    sent = delivery()
    await make_sink(session, hook.url, secret=SECRET).send(sent)
    [request] = hook.requests
    assert request.verified is True
    assert request.status == 200
    assert request.body == BODY.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == sent.id
    assert request.headers["webhook-signature"].startswith("v1,")


def test_the_test_receiver_refuses_to_verify_with_our_own_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the test extra were not installed: importing standardwebhooks fails.
    monkeypatch.setitem(sys.modules, "standardwebhooks.webhooks", None)
    with pytest.raises(MissingVerifier, match=r"pip install -e '\.\[test\]'"):
        WebhookReceiver(secret=SECRET)
    # A bare `bridge demo` may fall back, saying so.
    assert WebhookReceiver(secret=SECRET, allow_own_verifier=True).verifier == "bridge.signing"


async def test_every_retry_carries_the_same_webhook_id(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers(secret=SECRET)
    hook.script([500, 503, 502])
    sink = make_sink(session, hook.url, secret=SECRET)
    sent = delivery()
    for _ in range(3):
        with pytest.raises(RetryableDelivery):
            await sink.send(sent)
    await sink.send(sent)
    assert [r.status for r in hook.requests] == [500, 503, 502, 200]
    assert {r.webhook_id for r in hook.requests} == {sent.id}
    assert all(r.verified for r in hook.requests)


async def test_different_events_get_different_webhook_ids(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers()
    sink = make_sink(session, hook.url)
    await sink.send(delivery("evt_1"))
    await sink.send(delivery("evt_2"))
    first, second = hook.delivered_ids()
    assert first != second


async def test_without_a_secret_only_id_and_timestamp_are_sent(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers()
    await make_sink(session, hook.url).send(delivery())
    [request] = hook.requests
    assert "webhook-signature" not in request.headers
    assert request.headers["webhook-id"].startswith("msg_")
    assert int(request.headers["webhook-timestamp"]) > 1_700_000_000


async def test_custom_headers_are_sent_but_cannot_forge_the_signature(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers(secret=SECRET)
    sink = make_sink(session, hook.url, secret=SECRET,
                     headers={"X-Team": "ops", "webhook-id": "forged"})
    sent = delivery()
    await sink.send(sent)
    [request] = hook.requests
    assert request.headers["x-team"] == "ops"
    assert request.headers["webhook-id"] == sent.id
    assert request.verified is True


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (202, None),
        (204, None),
        (408, RetryableDelivery),
        (425, RetryableDelivery),
        (429, RetryableDelivery),
        (500, RetryableDelivery),
        (502, RetryableDelivery),
        (503, RetryableDelivery),
        (504, RetryableDelivery),
        (301, PermanentDelivery),
        (400, PermanentDelivery),
        (401, PermanentDelivery),
        (403, PermanentDelivery),
        (404, PermanentDelivery),
        (410, PermanentDelivery),
        (422, PermanentDelivery),
    ],
)
async def test_status_decides_between_delivered_retry_and_dead_letter(
    session: aiohttp.ClientSession, receivers: ReceiverFactory, status: int,
    expected: type[Exception] | None,
) -> None:
    hook = await receivers()
    hook.script([status])
    sink = make_sink(session, hook.url)
    if expected is None:
        await sink.send(delivery())
        return
    with pytest.raises(expected, match=f"HTTP {status}"):
        await sink.send(delivery())


async def test_retry_after_of_a_429_reaches_the_outbox(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers()
    hook.script([Reply(status=429, headers={"Retry-After": "7"})])
    with pytest.raises(RetryableDelivery) as caught:
        await make_sink(session, hook.url).send(delivery())
    assert caught.value.retry_after == 7.0


async def test_a_slow_receiver_times_out_as_retryable(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers()
    hook.script([Reply(delay=30)])
    with pytest.raises(RetryableDelivery, match="timed out"):
        await make_sink(session, hook.url, timeout="200ms").send(delivery())


async def test_a_receiver_that_crashed_gets_the_delivery_after_it_restarts(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers(secret=SECRET)
    sink = make_sink(session, hook.url, secret=SECRET)
    sent = delivery()
    await hook.stop()
    with pytest.raises(RetryableDelivery):
        await sink.send(sent)
    await hook.start()
    await sink.send(sent)
    assert hook.delivered_ids() == [sent.id]


async def test_a_payload_without_a_body_is_a_permanent_failure(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers()
    broken = delivery()
    notification = Notification(**{**{f: getattr(broken.notification, f) for f in (
        "event_id", "rule", "sink", "source", "job_id", "on", "terminal")},
        "payload": {"text": "no body"}})
    with pytest.raises(PermanentDelivery, match="template"):
        await make_sink(session, hook.url).send(
            Delivery(id=broken.id, notification=notification, created_at=broken.created_at))
    assert hook.requests == []


# --- no secret in any error -------------------------------------------------------------


async def _failures(session: aiohttp.ClientSession, hook: WebhookReceiver) -> list[str]:
    """The error text of every kind of failure, sent to a URL full of credentials."""
    url = f"http://bob:hunter2pw@127.0.0.1:{hook.port}/hook/tok3nInPath?key=qu3rysecret"
    sink = make_sink(session, url, secret=SECRET, timeout="200ms")
    hook.script([Reply(status=500, body=f"echo {url} {SECRET}"), 404, Reply(delay=30)])
    messages = []
    for _ in range(3):
        with pytest.raises((RetryableDelivery, PermanentDelivery)) as caught:
            await sink.send(delivery())
        messages.append(str(caught.value))
    await hook.stop()
    with pytest.raises(RetryableDelivery) as refused:
        await sink.send(delivery())
    messages.append(str(refused.value))
    return messages


async def test_no_secret_or_credentialed_url_appears_in_any_error(
    session: aiohttp.ClientSession, receivers: ReceiverFactory
) -> None:
    hook = await receivers()
    messages = await _failures(session, hook)
    assert len(messages) == 4
    for message in messages:
        for secret in ("hunter2pw", "tok3nInPath", "qu3rysecret", SECRET, SECRET[6:]):
            assert secret not in message, message
        assert "127.0.0.1" in message


def test_a_secret_that_is_not_base64_is_refused_by_the_model_without_the_secret() -> None:
    # The kind's model validates its own fields once; the sink never sees a bad secret.
    with pytest.raises(ValidationError) as caught:
        WebhookSink.model_validate({"name": "pager", "kind": "webhook",
                                    "url": "http://127.0.0.1:9/", "secret": "whsec_*bad*"})
    (error,) = caught.value.errors()
    assert error["loc"] == ("secret",)
    assert "base64" in error["msg"]
    assert "*bad*" not in error["msg"]


async def test_the_registry_builds_a_webhook_sink(session: aiohttp.ClientSession) -> None:
    config = WebhookSink.model_validate({"name": "pager", "kind": "webhook",
                                         "url": "http://127.0.0.1:9/"})
    sink = build_sink(config, session, store=None)  # type: ignore[arg-type]
    assert isinstance(sink, WebhookNotifier)
    assert sink.name == "pager"


# --- the retry table, as data -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.OK), (201, Verdict.OK), (299, Verdict.OK), (304, Verdict.PERMANENT),
     (400, Verdict.PERMANENT), (404, Verdict.PERMANENT), (408, Verdict.RETRY),
     (410, Verdict.PERMANENT), (418, Verdict.PERMANENT), (425, Verdict.RETRY),
     (429, Verdict.RETRY), (500, Verdict.RETRY), (501, Verdict.RETRY), (599, Verdict.RETRY)],
)
def test_status_table(status: int, verdict: Verdict) -> None:
    assert classify(status, {}).verdict is verdict


def test_retry_after_is_read_only_when_the_status_is_retried() -> None:
    assert classify(503, {"retry-after": "5"}).retry_after == 5.0
    assert classify(404, {"Retry-After": "5"}).retry_after is None


@pytest.mark.parametrize(
    ("error", "status", "verdict"),
    [("ratelimited", 429, Verdict.RETRY), ("ratelimited", 200, Verdict.RETRY),
     ("internal_error", 200, Verdict.RETRY), ("invalid_auth", 200, Verdict.PERMANENT),
     ("channel_not_found", 200, Verdict.PERMANENT), ("not_in_channel", 200, Verdict.PERMANENT),
     ("is_archived", 200, Verdict.PERMANENT), ("some_new_error", 200, Verdict.PERMANENT),
     ("some_new_error", 503, Verdict.RETRY), (None, 200, Verdict.OK)],
)
def test_slack_error_table(error: str | None, status: int, verdict: Verdict) -> None:
    assert classify_slack(error, status, {}).verdict is verdict


@pytest.mark.parametrize(
    ("url", "shown"),
    [("https://user:pw@hooks.example.com/T/B/secret?x=1", "https://hooks.example.com/…"),
     ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/…"), ("not a url", "<invalid URL>")],
)
def test_redacted_urls_show_scheme_and_host_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_retried_outcome_becomes_a_retryable_error_with_its_wait() -> None:
    error = classify(429, {"Retry-After": "1.5"}).error("POST http://h/…")
    assert isinstance(error, RetryableDelivery)
    assert error.retry_after == 1.5


def test_a_permanent_outcome_tells_the_user_how_to_requeue() -> None:
    error = classify(404, {}).error("POST http://h/…")
    assert isinstance(error, PermanentDelivery)
    assert "bridge outbox retry" in str(error)
