"""Retry policy as data: what an HTTP answer (or a Slack API error) means for a delivery.

Both sinks classify through this one table, like Alertmanager's `notify/util.go` Retrier:
2xx is delivered; 408, 425, 429 and 5xx are passing failures (honouring `Retry-After`);
every other status, 410 included, is permanent. Connection errors and timeouts are
retryable. How long to wait is read by `bridge.retry_after`, the one reader sources use too.
Slack answers `200 {"ok": false, "error": ...}`: its error codes have a table too.
Failure reasons are masked with `bridge.secrets` (the one registry) before they leave here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import aiohttp

from bridge.errors import DeliveryError, PermanentDelivery, RetryableDelivery
from bridge.retry_after import DEFAULT_MAX_RETRY_AFTER, retry_delay
from bridge.secrets import redact
from bridge.sinks.slack_hints import next_step


class Verdict(StrEnum):
    """What to do with a delivery after one answer."""

    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdict: Verdict
    # Short and free of secrets: "HTTP 503", "Slack error channel_not_found".
    reason: str
    retry_after: float | None = None

    def error(self, what: str) -> DeliveryError:
        """The typed error for a failed `what` ("POST https://host/…")."""
        message = f"{what}: {self.reason}"
        if self.verdict is Verdict.RETRY:
            return RetryableDelivery(message, retry_after=self.retry_after)
        return PermanentDelivery(f"{message}; fix the sink's config or the receiver, "
                                 "then `bridge outbox retry` re-queues it")


# Statuses whose meaning differs from their class (2xx ok, 5xx retry, other 4xx permanent).
STATUS_VERDICTS: Mapping[int, Verdict] = {
    408: Verdict.RETRY,  # request timeout
    425: Verdict.RETRY,  # too early
    429: Verdict.RETRY,  # too many requests
    410: Verdict.PERMANENT,  # gone: the receiver asks us to stop
}

# Slack Web API `error` codes (HTTP 200, `ok: false`). Unknown codes are permanent: Slack
# reports passing trouble with 429 or 5xx, which the status table already retries.
# `message_not_found` is not here: the Slack sink answers it by posting a new message.
SLACK_ERRORS: Mapping[str, Verdict] = {
    "ratelimited": Verdict.RETRY,
    "rate_limited": Verdict.RETRY,
    "internal_error": Verdict.RETRY,
    "fatal_error": Verdict.RETRY,
    "service_unavailable": Verdict.RETRY,
    "request_timeout": Verdict.RETRY,
    "team_added_to_org": Verdict.RETRY,
    "invalid_auth": Verdict.PERMANENT,
    "not_authed": Verdict.PERMANENT,
    "account_inactive": Verdict.PERMANENT,
    "token_revoked": Verdict.PERMANENT,
    "token_expired": Verdict.PERMANENT,
    "missing_scope": Verdict.PERMANENT,
    "channel_not_found": Verdict.PERMANENT,
    "not_in_channel": Verdict.PERMANENT,
    "is_archived": Verdict.PERMANENT,
    "msg_too_long": Verdict.PERMANENT,
    "no_text": Verdict.PERMANENT,
    "invalid_blocks": Verdict.PERMANENT,
    "invalid_blocks_format": Verdict.PERMANENT,
    "too_many_attachments": Verdict.PERMANENT,
    "restricted_action": Verdict.PERMANENT,
    "cant_update_message": Verdict.PERMANENT,
    "edit_window_closed": Verdict.PERMANENT,
    "invalid_arguments": Verdict.PERMANENT,
    "invalid_payload": Verdict.PERMANENT,
    "action_prohibited": Verdict.PERMANENT,
    "channel_is_archived": Verdict.PERMANENT,
}

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def verdict_for_status(status: int) -> Verdict:
    if status in STATUS_VERDICTS:
        return STATUS_VERDICTS[status]
    if 200 <= status < 300:
        return Verdict.OK
    if 500 <= status < 600:
        return Verdict.RETRY
    # Other 4xx, and 1xx/3xx that reach us (redirect loops, 304): resending will not help.
    return Verdict.PERMANENT


def classify(
    status: int, headers: Mapping[str, str] | None = None, *, now: Clock = _utcnow,
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
) -> Outcome:
    """The outcome of one HTTP answer, with `Retry-After` (or a rate-limit reset header)
    read when it is worth retrying, clamped to [0, max_retry_after]."""
    verdict = verdict_for_status(status)
    retry_after = None
    if verdict is Verdict.RETRY:
        retry_after = retry_delay(headers, now=now(), maximum=max_retry_after)
    return Outcome(verdict=verdict, reason=f"HTTP {status}", retry_after=retry_after)


def classify_slack(
    error: str | None, status: int, headers: Mapping[str, str] | None = None, *,
    now: Clock = _utcnow, max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    needed: str | None = None,
) -> Outcome:
    """The outcome of a Slack answer: the HTTP status first (429, 5xx), then the error code.
    The reason says what to do about the code (`needed`: the scope `missing_scope` names)."""
    by_status = classify(status, headers, now=now, max_retry_after=max_retry_after)
    if error is None:
        return by_status
    step = next_step(error, needed=needed)
    reason = f"Slack error {error} (HTTP {status})" + (f": {step}" if step else "")
    if by_status.verdict is Verdict.RETRY:
        return Outcome(verdict=Verdict.RETRY, reason=reason, retry_after=by_status.retry_after)
    verdict = SLACK_ERRORS.get(error, Verdict.PERMANENT)
    retry_after = None
    if verdict is Verdict.RETRY:
        retry_after = retry_delay(headers, now=now(), maximum=max_retry_after)
    return Outcome(verdict=verdict, reason=reason, retry_after=retry_after)


def classify_exception(exc: BaseException, *, secrets: tuple[str, ...] = ()) -> Outcome:
    """Connection errors and timeouts are passing; the reason never shows `secrets`."""
    if isinstance(exc, TimeoutError):  # aiohttp timeouts subclass it too
        return Outcome(verdict=Verdict.RETRY, reason="timed out")
    if isinstance(exc, aiohttp.InvalidURL):
        return Outcome(verdict=Verdict.PERMANENT, reason="invalid URL")
    detail = redact(str(exc), secrets)
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return Outcome(verdict=Verdict.RETRY, reason=reason)


