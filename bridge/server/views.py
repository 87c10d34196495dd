"""The JSON shapes of the HTTP API, shared by the dashboard: jobs, sources, deliveries.

Built from domain values only, never from raw config: a source shows its name, kind and
timings but not its URL, headers or credentials; a delivery shows its rendered text but not
the rest of its payload.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bridge.model import Delivery, SourceHealth, TrackedJob
from bridge.server.runtime import SourceView
from bridge.store.base import OutboxStats


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 3) if value is not None else None


def job_duration(job: TrackedJob, now: datetime) -> timedelta | None:
    """Time since the job was first seen running, up to when it finished if it did."""
    if job.started_at is None:
        return None
    end = job.finished_at if job.done and job.finished_at is not None else now
    return max(end - job.started_at, timedelta(0))


def job_json(job: TrackedJob, now: datetime) -> dict[str, Any]:
    status = job.status
    return {
        "source": job.source,
        "id": status.id,
        "state": str(status.state),
        "raw_state": status.raw_state,
        "progress": status.progress,
        "message": status.message,
        "url": status.url,
        "run": status.run,
        "failed_items": status.failed_items,
        "fields": dict(status.fields),
        "first_seen": iso(job.first_seen),
        "last_seen": iso(job.last_seen),
        "started_at": iso(job.started_at),
        "moved_at": iso(job.moved_at),
        "finished_at": iso(job.finished_at),
        "duration": seconds(job_duration(job, now)),
        "stalled": job.stalled,
        "missing_since": iso(job.missing_since),
        "vanished": job.vanished,
        "done": job.done,
    }


def health_json(health: SourceHealth | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {
        "up": health.up,
        "since": iso(health.since),
        "reason": health.reason,
        "failures": health.failures,
        "last_poll_at": iso(health.last_poll_at),
        "last_latency": health.last_latency,
    }


def accepts_push(view: SourceView) -> bool:
    """Whether the source takes pushes now: its kind does, and it has a `secret` to verify
    them with."""
    return view.capabilities.accepts_push and view.config.push_secret() is not None


def source_json(view: SourceView) -> dict[str, Any]:
    config = view.config
    polled = view.capabilities.polled
    return {
        "name": config.name,
        "kind": config.kind,
        "polled": polled,
        "interval": seconds(config.interval) if polled else None,
        "timeout": seconds(config.timeout),
        "stall_after": seconds(config.stall_after),
        "lists_jobs": view.lists_jobs,
        "accepts_push": accepts_push(view),
        "ids": list(config.ids),
        "health": health_json(view.health),
    }


def delivery_json(delivery: Delivery, now: datetime) -> dict[str, Any]:
    note = delivery.notification
    text = note.payload.get("text")
    return {
        "id": delivery.id,
        "sink": note.sink,
        "rule": note.rule,
        "source": note.source,
        "job_id": note.job_id,
        "event_id": note.event_id,
        "on": str(note.on),
        "status": str(delivery.status),
        "attempts": delivery.attempts,
        "created_at": iso(delivery.created_at),
        "age": seconds(now - delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_error": delivery.last_error,
        "delivered_at": iso(delivery.delivered_at),
        "text": text if isinstance(text, str) else None,
        "silenced": note.silenced,
    }


def stats_json(stats: OutboxStats, now: datetime) -> dict[str, Any]:
    oldest = now - stats.oldest_pending if stats.oldest_pending is not None else None
    return {
        "pending": stats.pending,
        "dead": stats.dead,
        "delivered": stats.delivered,
        "superseded": stats.superseded,
        "oldest_pending_age": seconds(oldest),
        "per_sink_pending": dict(stats.per_sink_pending),
    }
