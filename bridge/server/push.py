"""Push input: the source's key, and a memory of accepted ids to refuse replays.

A pushed observation arrives as `POST /v1/events/{source}` with `webhook-id`,
`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`,
several space-separated signatures allowed, so a sender can rotate keys). The key is the
source's `secret` (`whsec_<base64>`), checked by `bridge.signing.verify`. A message is
accepted once: its id is remembered until
its timestamp leaves the tolerance window, after which the timestamp check refuses it anyway.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from bridge.errors import BridgeError
from bridge.signing import TOLERANCE, SignedMessage, decode_secret


class BadSecret(BridgeError):
    """The configured secret is not `whsec_` + base64; the operator must fix the config."""

    def __init__(self, source: str):
        super().__init__(
            f"source {source!r}: `secret` is not a Standard Webhooks secret; "
            'set it to "whsec_" followed by base64 bytes'
        )


def secret_key(secret: str, source: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional, as in the reference)."""
    try:
        return decode_secret(secret)
    except ValueError:
        raise BadSecret(source) from None


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
