"""Push input: verify Standard Webhooks signatures and remember ids to refuse replays.

A pushed observation arrives as `POST /v1/events/{source}` with `webhook-id`,
`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`,
several space-separated signatures allowed, so a sender can rotate keys). The key is the
source's `secret` (`whsec_<base64>`). A message is accepted once: its id is remembered until
its timestamp leaves the tolerance window, after which the timestamp check refuses it anyway.
"""

from __future__ import annotations

import heapq
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bridge.errors import BridgeError
from bridge.signing import decode_secret, sign

TOLERANCE = timedelta(minutes=5)


class SignatureProblem(StrEnum):
    MISSING_HEADERS = "missing_headers"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_OLD = "too_old"
    TOO_NEW = "too_new"
    NO_MATCH = "no_match"


_EXPLAIN = {
    SignatureProblem.MISSING_HEADERS:
        "send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)",
    SignatureProblem.BAD_TIMESTAMP: "webhook-timestamp must be integer Unix seconds",
    SignatureProblem.TOO_OLD: "webhook-timestamp is more than 5 minutes old; check the clock",
    SignatureProblem.TOO_NEW:
        "webhook-timestamp is more than 5 minutes in the future; check the clock",
    SignatureProblem.NO_MATCH:
        "no webhook-signature matches the body; sign id.timestamp.body with the source's secret",
}


class SignatureError(BridgeError):
    """The push did not prove it came from the holder of the source's secret."""

    def __init__(self, problem: SignatureProblem):
        self.problem = problem
        super().__init__(f"signature refused ({problem}): {_EXPLAIN[problem]}")


class BadSecret(BridgeError):
    """The configured secret is not `whsec_` + base64; the operator must fix the config."""

    def __init__(self, source: str):
        super().__init__(
            f"source {source!r}: `secret` is not a Standard Webhooks secret; "
            'set it to "whsec_" followed by base64 bytes'
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedMessage:
    id: str
    timestamp: datetime


def secret_key(secret: str, source: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional, as in the reference)."""
    try:
        return decode_secret(secret)
    except ValueError:
        raise BadSecret(source) from None


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: timedelta = TOLERANCE,
) -> SignedMessage:
    """Check the Standard Webhooks headers of `body`; raise SignatureError naming the problem."""
    msg_id = headers.get("webhook-id", "").strip()
    stamp = headers.get("webhook-timestamp", "").strip()
    signatures = headers.get("webhook-signature", "").strip()
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


class ReplayGuard:
    """Bounded memory of accepted message ids per source, each kept while it could verify.

    `claim` before acting, `release` if acting failed so the sender's retry is not refused.
    When full, the ids closest to expiry are forgotten first; only authenticated messages are
    remembered, so filling it needs the secret.
    """

    def __init__(self, *, tolerance: timedelta = TOLERANCE, capacity: int = 100_000) -> None:
        self.tolerance = tolerance
        self.capacity = capacity
        self._expiry: dict[tuple[str, str], datetime] = {}
        self._heap: list[tuple[datetime, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, source: str, message: SignedMessage, now: datetime) -> bool:
        """Remember the message; False if it was already seen (a replay)."""
        self._forget_expired(now)
        key = (source, message.id)
        if key in self._expiry:
            return False
        while len(self._expiry) >= self.capacity:
            self._pop()
        expiry = message.timestamp + self.tolerance
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        return True

    def release(self, source: str, message: SignedMessage) -> None:
        # The heap entry stays; `_pop` skips entries whose key is gone or re-added later.
        self._expiry.pop((source, message.id), None)

    def _forget_expired(self, now: datetime) -> None:
        while self._heap and self._heap[0][0] < now:
            self._pop()

    def _pop(self) -> None:
        expiry, key = heapq.heappop(self._heap)
        if self._expiry.get(key) == expiry:
            del self._expiry[key]
