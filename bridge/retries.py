"""What to do after a failed delivery attempt: retry at a time, or dead-letter, and why.

A pure function of the sink's retry policy, the row's attempts and age, and the receiver's
Retry-After, so it is tested without a sink (contract section 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bridge.config.schema import RetryPolicy
from bridge.errors import DeliveryError
from bridge.model import Delivery
from bridge.retry_after import DEFAULT_MAX_RETRY_AFTER, clamp


class StepKind(StrEnum):
    RETRY = "retry"
    DEAD_PERMANENT = "dead_permanent"
    DEAD_EXHAUSTED = "dead_exhausted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    kind: StepKind
    at: datetime | None = None


def next_step(
    *,
    policy: RetryPolicy,
    delivery: Delivery,
    error: DeliveryError,
    now: datetime,
    jitter: float = 0.0,
    max_retry_after: timedelta | None = None,
) -> Step:
    """What to do after a failed attempt: retry at a time, or dead-letter (and why).

    `delivery.attempts` counts the attempts before this one; `jitter` in [-1, 1] spreads
    retries of many rows by up to 10% so they do not hit a recovering sink together. The
    receiver's Retry-After is honoured up to `max_retry_after` (the sink's setting): a wait
    of `inf` or 1e20 s, whatever reported it, gives a bounded retry time or a dead letter,
    never an exception that would leave the row claimed and unrecorded.
    """
    if not error.retryable:
        return Step(kind=StepKind.DEAD_PERMANENT)
    attempts = delivery.attempts + 1
    if attempts >= policy.attempts:
        return Step(kind=StepKind.DEAD_EXHAUSTED)
    schedule = policy.schedule
    wait = schedule[min(attempts - 1, len(schedule) - 1)].total_seconds()
    wait *= 1 + 0.1 * max(-1.0, min(1.0, jitter))
    ceiling = (max_retry_after.total_seconds() if max_retry_after is not None
               else DEFAULT_MAX_RETRY_AFTER)
    asked = clamp(error.retry_after, ceiling)
    if asked is not None:
        wait = max(wait, asked)
    # Seconds, not timedeltas, until the wait is known to fit: timedelta(seconds=1e20) and
    # now + a century of schedule both raise OverflowError.
    age = (now - delivery.created_at).total_seconds()
    if age + wait > policy.max_age.total_seconds():
        return Step(kind=StepKind.DEAD_EXHAUSTED)
    try:
        at = now + timedelta(seconds=wait)
    except OverflowError:
        return Step(kind=StepKind.DEAD_EXHAUSTED)
    return Step(kind=StepKind.RETRY, at=at)
