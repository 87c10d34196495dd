"""What a notification's payload asks Slack to show (its message and thread replies), and
how long its row already waited in the outbox: the Slack sink's reading of a delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.errors import PermanentDelivery
from bridge.model import Delivery, Notification


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackMessage:
    """What a notification's payload asks Slack to show."""

    text: str
    blocks: Sequence[dict[str, Any]] | None = None

    def fields(self) -> dict[str, Any]:
        return {"text": self.text} | ({"blocks": list(self.blocks)} if self.blocks else {})


def replies_of(n: Notification) -> list[SlackMessage]:
    replies = n.payload.get("replies")
    if not isinstance(replies, list):
        return []
    return [SlackMessage(text=r["text"], blocks=r.get("blocks") or None) for r in replies
            if isinstance(r, dict) and isinstance(r.get("text"), str)]


def message_of(delivery: Delivery) -> SlackMessage:
    payload = delivery.notification.payload
    text, blocks = payload.get("text"), payload.get("blocks")
    if not isinstance(text, str) or (blocks is not None and not isinstance(blocks, list)):
        raise PermanentDelivery(
            f"notification {delivery.id} for Slack sink {delivery.notification.sink!r} needs "
            "'text' (and 'blocks' as a list, if any); check the rule's template"
        )
    return SlackMessage(text=text, blocks=blocks or None)


def age_of(delivery: Delivery) -> float:
    """Seconds since the row was queued: time it already waited in the outbox (behind a busy
    channel's earlier rows) counts toward `overflow_after`."""
    created = delivery.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - created).total_seconds())
