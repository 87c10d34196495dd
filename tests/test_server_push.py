"""Push input: our Standard Webhooks verifier against the reference signer, replay memory,
and `POST /v1/events/{source}` over a real socket."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from bridge.model import EventKind, JobState
from bridge.server.push import ReplayGuard, secret_key
from bridge.signing import SignatureError, SignatureProblem, SignedMessage, verify
from tests.server_support import ADMIN_TOKEN, PUSH_SECRET, TERMINAL_SECRET, harness

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BODY = json.dumps({"id": "exp-7", "status": "running", "percent": 30}).encode()
KEY = secret_key(PUSH_SECRET, "hooks")


def signed(body: bytes = BODY, *, secret: str = PUSH_SECRET, msg_id: str = "msg_1",
           at: datetime | None = None) -> dict[str, str]:
    """Headers the reference `standardwebhooks` package produces for `body`."""
    when = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "Content-Type": "application/json",
    }


# --- the verifier ------------------------------------------------------------------------------


def test_verify_accepts_the_reference_signature() -> None:
    message = verify(KEY, signed(at=NOW), BODY, now=NOW)
    assert message == SignedMessage(id="msg_1", timestamp=NOW)


def test_verify_accepts_any_one_of_several_signatures() -> None:
    headers = signed(at=NOW)
    headers["webhook-signature"] = "v1,bm90IGl0 v2,whatever " + headers["webhook-signature"]
    assert verify(KEY, headers, BODY, now=NOW).id == "msg_1"


def _problem(headers: dict[str, str], body: bytes = BODY,
             now: datetime = NOW) -> SignatureProblem:
    with pytest.raises(SignatureError) as caught:
        verify(KEY, headers, body, now=now)
    return caught.value.problem


def test_verify_refuses_a_tampered_body() -> None:
    assert _problem(signed(at=NOW), BODY.replace(b"30", b"99")) is SignatureProblem.NO_MATCH


def test_verify_refuses_a_signature_made_with_another_secret() -> None:
    assert _problem(signed(secret=TERMINAL_SECRET, at=NOW)) is SignatureProblem.NO_MATCH


def test_verify_refuses_a_timestamp_older_than_five_minutes() -> None:
    assert _problem(signed(at=NOW - timedelta(minutes=6))) is SignatureProblem.TOO_OLD


def test_verify_refuses_a_timestamp_more_than_five_minutes_ahead() -> None:
    assert _problem(signed(at=NOW + timedelta(minutes=6))) is SignatureProblem.TOO_NEW


def test_verify_accepts_a_timestamp_within_the_tolerance() -> None:
    assert verify(KEY, signed(at=NOW - timedelta(minutes=4)), BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_refuses_missing_headers(missing: str) -> None:
    headers = signed(at=NOW)
    del headers[missing]
    assert _problem(headers) is SignatureProblem.MISSING_HEADERS


def test_verify_refuses_a_timestamp_that_is_not_unix_seconds() -> None:
    headers = signed(at=NOW)
    headers["webhook-timestamp"] = "2026-11-23T10:00:00Z"
    assert _problem(headers) is SignatureProblem.BAD_TIMESTAMP


# --- replay memory -----------------------------------------------------------------------------


def _message(msg_id: str, at: datetime = NOW) -> SignedMessage:
    return SignedMessage(id=msg_id, timestamp=at)


def test_replay_guard_refuses_an_id_seen_before() -> None:
    guard = ReplayGuard()
    assert guard.claim("hooks", _message("a"), NOW)
    assert not guard.claim("hooks", _message("a"), NOW + timedelta(seconds=1))


def test_replay_guard_keeps_ids_per_source() -> None:
    guard = ReplayGuard()
    assert guard.claim("hooks", _message("a"), NOW)
    assert guard.claim("syncs", _message("a"), NOW)


def test_replay_guard_forgets_ids_once_their_timestamp_expired() -> None:
    guard = ReplayGuard(tolerance=timedelta(minutes=5))
    guard.claim("hooks", _message("a"), NOW)
    guard.claim("hooks", _message("b"), NOW + timedelta(minutes=5, seconds=2))
    assert len(guard) == 1


def test_replay_guard_release_lets_the_sender_retry() -> None:
    guard = ReplayGuard()
    guard.claim("hooks", _message("a"), NOW)
    guard.release("hooks", _message("a"))
    assert guard.claim("hooks", _message("a"), NOW)


def test_replay_guard_stays_within_its_capacity() -> None:
    guard = ReplayGuard(capacity=3)
    for n in range(10):
        guard.claim("hooks", _message(str(n), NOW + timedelta(seconds=n)), NOW)
    assert len(guard) == 3
    assert not guard.claim("hooks", _message("9", NOW + timedelta(seconds=9)), NOW)


# --- the route ------------------------------------------------------------------------------


async def test_signed_push_is_accepted_and_fed_through_detection(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=BODY, headers=signed())
        stored = await h.events("hooks")
        job = h.bridge.pipeline.jobs("hooks")["exp-7"]
    assert reply.status == 202
    assert reply.json()["events"] and reply.json()["events"][0].startswith("evt_")
    assert [e.id for e in stored] == reply.json()["events"]
    assert stored[0].on is EventKind.APPEARED
    assert (job.status.state, job.status.progress) == (JobState.RUNNING, 30)


async def test_terminal_source_with_a_secret_accepts_pushes(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        terminal = h.upstream.terminal
        sync_id = terminal.add_sync(status="in_progress", progress=30)
        body = json.dumps(terminal.webhook_event(sync_id)).encode()
        reply = await h.post("/v1/events/syncs", data=body,
                             headers=signed(body, secret=TERMINAL_SECRET))
        tracked = set(h.bridge.pipeline.jobs("syncs"))
    assert reply.status == 202
    assert tracked == {sync_id}


def svix_signed(body: bytes, *, secret: str, msg_id: str = "msg_svix_1") -> dict[str, str]:
    """The headers Svix sends (Terminal's webhooks): the reference signature under `svix-*`."""
    when = datetime.now(UTC)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "Content-Type": "application/json",
    }


def test_verify_accepts_svix_header_names() -> None:
    headers = signed(at=NOW)
    renamed = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    assert verify(KEY, renamed, BODY, now=NOW).id == "msg_1"


def test_verify_refuses_a_svix_signature_over_another_body() -> None:
    headers = {k.replace("webhook-", "svix-"): v for k, v in signed(at=NOW).items()}
    assert _problem(headers, BODY.replace(b"30", b"31")) is SignatureProblem.NO_MATCH


async def test_a_svix_signed_terminal_webhook_from_the_docs_is_accepted(tmp_path: Path) -> None:
    # Terminal's own example event (tests/fixtures/vendors/SOURCES.md), signed as Svix does.
    body = (Path(__file__).parent / "fixtures/vendors/terminal_sync_completed_event.json"
            ).read_bytes()
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/syncs", data=body,
                             headers=svix_signed(body, secret=TERMINAL_SECRET))
        jobs = h.bridge.pipeline.jobs("syncs")
    assert reply.status == 202
    assert jobs["sync_01GV12VR4DJP70GD1ZBK0SDWFH"].status.state is JobState.SUCCEEDED


async def test_push_needs_no_admin_token_but_its_signature(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=BODY, headers=signed())
    assert reply.status == 202


async def test_tampered_push_is_401_and_not_fed(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=BODY.replace(b"30", b"99"),
                             headers=signed())
        stored = await h.events("hooks")
        tracked = dict(h.bridge.pipeline.jobs("hooks"))
    assert reply.status == 401
    assert "signature" in reply.json()["error"]
    assert stored == []
    assert tracked == {}


async def test_expired_push_is_401(tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(minutes=10)
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=BODY, headers=signed(at=old))
    assert reply.status == 401
    assert "old" in reply.json()["error"]


async def test_replayed_push_is_409(tmp_path: Path) -> None:
    headers = signed(msg_id="msg_replayed")
    async with harness(tmp_path, with_rows=False) as h:
        first = await h.post("/v1/events/hooks", data=BODY, headers=headers)
        replay = await h.post("/v1/events/hooks", data=BODY, headers=headers)
        stored = await h.events("hooks")
    assert first.status == 202
    assert replay.status == 409
    assert [e.id for e in stored] == first.json()["events"]


async def test_a_webhook_id_seen_before_is_not_fed_even_with_another_body(
    tmp_path: Path,
) -> None:
    # An exact replay fed twice would change nothing; a new state under the old id would.
    failed = json.dumps({"id": "exp-7", "status": "failed"}).encode()
    async with harness(tmp_path, with_rows=False) as h:
        first = await h.post("/v1/events/hooks", data=BODY, headers=signed(msg_id="msg_3"))
        again = await h.post("/v1/events/hooks", data=failed,
                             headers=signed(failed, msg_id="msg_3"))
        stored = await h.events("hooks")
        job = h.bridge.pipeline.jobs("hooks")["exp-7"]
    assert first.status == 202
    assert again.status == 409
    assert [e.on for e in stored] == [EventKind.APPEARED]
    assert job.status.state is JobState.RUNNING


async def test_a_refused_body_does_not_use_up_its_webhook_id(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        bad = await h.post("/v1/events/hooks", data=b"{not json",
                           headers=signed(b"{not json", msg_id="msg_2"))
        good = await h.post("/v1/events/hooks", data=BODY, headers=signed(msg_id="msg_2"))
    assert bad.status == 400
    assert good.status == 202


async def test_source_without_a_secret_refuses_pushes_saying_to_set_it(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/quiet", data=BODY, headers=signed())
    assert reply.status == 403
    assert "`secret`" in reply.json()["error"]


async def test_push_to_an_unknown_source_is_404(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/nope", data=BODY, headers=signed())
    assert reply.status == 404


async def test_oversized_push_is_413(tmp_path: Path) -> None:
    body = b'{"id": "' + b"x" * (1024 * 1024) + b'"}'
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=io.BytesIO(body), headers=signed(body))
    assert reply.status == 413


async def test_a_push_nested_too_deeply_is_400_not_a_crash(tmp_path: Path) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=body, headers=signed(body))
        stored = await h.events("hooks")
    assert reply.status == 400
    assert "JSON" in reply.json()["error"]
    assert stored == []
