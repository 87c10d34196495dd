"""`bridge outbox [list|retry ID|drop ID] [--all] [--status ...] [--json]`: pending and
dead-lettered deliveries read straight from the state store, re-queued or discarded there
(no running bridge needed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.config import Config
from bridge.model import DeliveryStatus
from bridge.store import open_store
from bridge.store.base import Store


async def run_outbox(config: Config, args: argparse.Namespace) -> int:
    """`bridge outbox list|retry|drop` on the config's state store; the exit code."""
    store = open_store(config.bridge.state)
    await store.open()
    try:
        now = datetime.now(UTC)
        if args.action in {"retry", "drop"}:
            if not args.id and not args.all:
                print(f"bridge outbox {args.action}: give a delivery ID or --all", file=sys.stderr)
                return 1
            target = None if args.all else args.id
            if args.action == "retry":
                count = await store.retry_deliveries(target, now)
            else:
                count = await store.drop_deliveries(target)
            if count == 0 and target is not None:
                print(await _not_found(store, target), file=sys.stderr)
                return 1
            print(f"{'re-queued' if args.action == 'retry' else 'dropped'} {count} deliver"
                  f"{'y' if count == 1 else 'ies'}")
            return 0
        if args.status:
            rows = await store.list_outbox(DeliveryStatus(args.status), limit=500)
        else:
            # Asked separately: delivered rows (kept a week) must not crowd these out.
            rows = [*await store.list_outbox(DeliveryStatus.PENDING, limit=500),
                    *await store.list_outbox(DeliveryStatus.DEAD, limit=500)]
        _print_outbox(rows, now, as_json=args.json)
        return 0
    finally:
        await store.close()


async def _not_found(store: Store, delivery_id: str) -> str:
    """Why `retry ID` did nothing: no such row, one being sent, or one delivered already."""
    found = await store.get_delivery(delivery_id)
    if found is not None and found.status is DeliveryStatus.PENDING:
        # `retry` leaves a claimed row alone: re-queueing it would send it twice.
        return (f"delivery {delivery_id!r} is being sent right now; nothing to retry "
                "(see `bridge outbox list`)")
    if found is not None:
        return (f"delivery {delivery_id!r} was already delivered; nothing to retry "
                "(see `bridge outbox list --status delivered`)")
    return f"no delivery {delivery_id!r} in the outbox (see `bridge outbox list`)"


def _print_outbox(rows: Sequence[Any], now: datetime, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([
            {"id": r.id, "status": str(r.status), "sink": r.notification.sink,
             "rule": r.notification.rule, "source": r.notification.source,
             "job_id": r.notification.job_id, "attempts": r.attempts,
             "created_at": r.created_at.isoformat(), "last_error": r.last_error,
             "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
             "silenced": r.notification.silenced}
            for r in rows], indent=2))
        return
    if not rows:
        print("outbox is empty: nothing pending, nothing dead-lettered")
        return
    header = (f"{'ID':<28} {'STATUS':<10} {'SINK':<14} {'JOB':<24} {'AGE':>7} {'TRIES':>5}"
              "  LAST ERROR")
    print(header)
    for r in rows:
        age = _short_age((now - r.created_at).total_seconds())
        job = f"{r.notification.source}/{r.notification.job_id or '-'}"
        # A silenced row has no error: say what silenced it instead.
        error = _whole_words(r.last_error or r.notification.silenced or "")
        print(f"{r.id:<28} {r.status!s:<10} {r.notification.sink:<14} {job[:24]:<24} "
              f"{age:>7} {r.attempts:>5}  {error}")


def _whole_words(error: str, limit: int = 400) -> str:
    """The error on one line, last in the row so nothing needs cutting; only a runaway one
    is shortened, at a word boundary, keeping its start (the code and the next step)."""
    text = " ".join(error.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def _short_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
