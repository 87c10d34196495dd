"""Standard Webhooks signing and verification (https://www.standardwebhooks.com), our own code.

Outgoing webhooks are signed here; the push input (`POST /v1/events/{source}`) verifies with
the same functions. A secret is `whsec_` followed by base64 key bytes; the signature is
`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several separated by spaces when keys
rotate. Tests check this module against the independent `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from bridge.errors import BridgeError

SECRET_PREFIX = "whsec_"
# Receivers refuse timestamps further than this from their clock (replay protection).
DEFAULT_TOLERANCE = 300.0


class InvalidSignature(BridgeError):
    """A pushed request's Standard Webhooks headers are missing, stale or do not match."""


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


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Callable[[], float] = time.time,
) -> str:
    """Check a request's signature; return its `webhook-id` (for de-duplication).

    Raises InvalidSignature saying which check failed.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise InvalidSignature(
            "missing webhook-id, webhook-timestamp or webhook-signature header; "
            "the sender must sign with the source's whsec_ secret"
        )
    timestamp = _timestamp(stamp, clock(), tolerance)
    expected = sign(key, msg_id, timestamp, body).encode()
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise InvalidSignature(
        "no webhook-signature matches the body; check that both sides use the same secret"
    )


def _timestamp(stamp: str, now: float, tolerance: float) -> int:
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature(f"webhook-timestamp {stamp[:20]!r} is not Unix seconds") from None
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(
            f"webhook-timestamp is {abs(now - timestamp):.0f} s away from our clock "
            f"(more than {tolerance:.0f} s): a replay, or a clock to fix"
        )
    return timestamp
