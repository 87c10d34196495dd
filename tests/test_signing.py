"""Standard Webhooks signing, checked against the independent `standardwebhooks` package."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bridge.signing import SignatureError, decode_secret, sign, signed_headers, verify

SECRET = "whsec_" + base64.b64encode(b"a 32-byte key for the tests only").decode()
KEY = decode_secret(SECRET)


@given(
    msg_id=st.text(alphabet=st.characters(codec="ascii", exclude_characters="."), min_size=1),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
    body=st.text(),
)
def test_signature_matches_the_reference_implementation(
    msg_id: str, timestamp: int, body: str
) -> None:
    theirs = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)
    assert sign(KEY, msg_id, timestamp, body.encode()) == theirs


def test_reference_verifier_accepts_our_headers() -> None:
    body = b'{"type": "job.transition"}'
    headers = signed_headers(KEY, "msg_1", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "job.transition"}


def test_reference_verifier_refuses_a_changed_body() -> None:
    headers = signed_headers(KEY, "msg_1", int(time.time()), b'{"a": 1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"a": 2}', headers)


def test_no_key_means_no_signature_header() -> None:
    headers = signed_headers(None, "msg_1", 1_700_000_000, b"{}")
    assert headers == {"webhook-id": "msg_1", "webhook-timestamp": "1700000000"}


def test_verify_accepts_a_reference_signature_and_returns_the_id() -> None:
    body = '{"id": "8b72"}'
    now = datetime.now(UTC)
    headers = {
        "Webhook-Id": "msg_42",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": Webhook(SECRET).sign("msg_42", now, body),
    }
    assert verify(KEY, headers, body.encode(), now=now).id == "msg_42"


def test_verify_accepts_any_of_several_signatures_during_key_rotation() -> None:
    old_key = decode_secret("whsec_" + base64.b64encode(b"the old key").decode())
    body = b"{}"
    stamp = int(time.time())
    headers = signed_headers(KEY, "msg_1", stamp, body)
    headers["webhook-signature"] = f"{sign(old_key, 'msg_1', stamp, body)} v1,bm9wZQ== " + (
        headers["webhook-signature"]
    )
    assert verify(KEY, headers, body, now=datetime.fromtimestamp(stamp, UTC)).id == "msg_1"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"body": b'{"tampered": true}'}, "no webhook-signature matches"),
        ({"key": b"another key"}, "no webhook-signature matches"),
        ({"stamp_offset": -3600}, "more than 5 minutes old"),
        ({"stamp_offset": 3600}, "in the future"),
        ({"drop": "webhook-signature"}, "send webhook-id, webhook-timestamp and"),
        ({"drop": "webhook-id"}, "send webhook-id, webhook-timestamp and"),
    ],
)
def test_verify_refuses_what_was_not_signed_now_with_our_key(
    change: dict[str, object], complaint: str
) -> None:
    now = 1_700_000_000.0
    body = b'{"ok": true}'
    headers = signed_headers(KEY, "msg_1", int(now) + int(str(change.get("stamp_offset", 0))),
                             body)
    headers.pop(str(change.get("drop", "")), None)
    key = change.get("key", KEY)
    assert isinstance(key, bytes)
    sent = change.get("body", body)
    assert isinstance(sent, bytes)
    with pytest.raises(SignatureError, match=complaint):
        verify(key, headers, sent, now=datetime.fromtimestamp(now, UTC))


def test_unpadded_and_prefixless_secrets_decode_to_the_same_key() -> None:
    encoded = base64.b64encode(b"key!").decode()
    assert encoded.endswith("=")
    assert decode_secret("whsec_" + encoded.rstrip("=")) == b"key!"
    assert decode_secret(encoded) == b"key!"


def test_a_secret_that_is_not_base64_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError, match="base64") as caught:
        decode_secret("whsec_not*base64*at*all")
    assert "not*base64" not in str(caught.value)
