"""Standard Webhooks signing and verification (https://www.standardwebhooks.com), our own code.

Outgoing webhooks are signed here; the push input (`POST /v1/events/{source}`) and the test
webhook receiver verify with `verify` (the `webhook-*` headers, or the same under Svix's
`svix-*` names). A secret is `whsec_` followed by base64 key bytes;
the signature is `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several separated by
spaces when keys rotate. Tests check this module against the independent `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bridge.errors import BridgeError

SECRET_PREFIX = "whsec_"
# Receivers refuse timestamps further than this from their clock (replay protection).
TOLERANCE = timedelta(minutes=5)


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_...` secret (the prefix is optional).

    Raises ValueError, with a message that does not repeat the secret, when it is not base64.
    """
    encoded = secret.removeprefix(SECRET_PREFIX).strip().rstrip("=")
    # Unpadded base64 is common in generated secrets: pad it back.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the secret is not 'whsec_' followed by base64") from exc
    if not key:
        raise ValueError("the secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 signature>` over `msg_id.timestamp.body`."""
    to_sign = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one request; no signature without a key."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if key is not None:
        headers["webhook-signature"] = sign(key, msg_id, timestamp, body)
    return headers


class SignatureProblem(StrEnum):
    MISSING_HEADERS = "missing_headers"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_OLD = "too_old"
    TOO_NEW = "too_new"
    NO_MATCH = "no_match"


_EXPLAIN = {
    SignatureProblem.MISSING_HEADERS:
        "send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks; "
        "Svix's svix-id, svix-timestamp and svix-signature are accepted too)",
    SignatureProblem.BAD_TIMESTAMP: "webhook-timestamp must be integer Unix seconds",
    SignatureProblem.TOO_OLD: "webhook-timestamp is more than 5 minutes old; check the clock",
    SignatureProblem.TOO_NEW:
        "webhook-timestamp is more than 5 minutes in the future; check the clock",
    SignatureProblem.NO_MATCH:
        "no webhook-signature matches the body; sign id.timestamp.body with the shared secret",
}


class SignatureError(BridgeError):
    """A signed request did not prove it came from the holder of the secret."""

    def __init__(self, problem: SignatureProblem):
        self.problem = problem
        super().__init__(f"signature refused ({problem}): {_EXPLAIN[problem]}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedMessage:
    id: str
    timestamp: datetime


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: timedelta = TOLERANCE,
) -> SignedMessage:
    """Check the Standard Webhooks headers of `body`; raise SignatureError naming the problem."""
    msg_id, stamp, signatures = _signature_headers(headers)
    if not (msg_id and stamp and signatures):
        raise SignatureError(SignatureProblem.MISSING_HEADERS)
    if not stamp.isdigit():
        raise SignatureError(SignatureProblem.BAD_TIMESTAMP)
    seconds = int(stamp)
    try:
        at = datetime.fromtimestamp(seconds, now.tzinfo)
    except (OverflowError, OSError, ValueError):
        raise SignatureError(SignatureProblem.BAD_TIMESTAMP) from None
    if at < now - tolerance:
        raise SignatureError(SignatureProblem.TOO_OLD)
    if at > now + tolerance:
        raise SignatureError(SignatureProblem.TOO_NEW)
    expected = sign(key, msg_id, seconds, body).encode()
    for candidate in signatures.split():
        # compare_digest on every candidate: the time taken says nothing about the key.
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return SignedMessage(id=msg_id, timestamp=at)
    raise SignatureError(SignatureProblem.NO_MATCH)


# Svix (which signs Terminal's webhooks) uses the Standard Webhooks scheme under its own
# header names; a sender uses one set or the other, never a mix.
_HEADER_SETS = (
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
    ("svix-id", "svix-timestamp", "svix-signature"),
)


def _signature_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """(id, timestamp, signatures) from the first header set present, in any casing."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for names in _HEADER_SETS:
        found = tuple(lowered.get(name, "").strip() for name in names)
        if any(found):
            return found[0], found[1], found[2]
    return "", "", ""
