"""The JSON API (contract section 8): health, metrics, read views and operator actions.

Read routes are open; write routes pass `AdminAuth.check_bearer` first. Errors answer
`{"error": "..."}` with a message saying what to change (see `app.errors_middleware`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.errors import SourceError, StoreError
from bridge.model import DeliveryStatus, JobState
from bridge.server.push import BadSecret, secret_key
from bridge.server.state import ServerState, state_of
from bridge.server.views import (
    delivery_json,
    job_json,
    source_json,
    stats_json,
)
from bridge.signing import SignatureError, SignedMessage, verify
from bridge.sources import SOURCE_KINDS, source_kind
from bridge.sources.shapes import parse_json

log = logging.getLogger(__name__)

MAX_LIMIT = 500


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, default=str))


def _int_param(request: web.Request, name: str, default: int | None, *,
               low: int = 0, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"`{name}` must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise web.HTTPBadRequest(text=f"`{name}` must be {bound}, got {value}")
    return value


_E = TypeVar("_E", JobState, DeliveryStatus)


def _enum_param(request: web.Request, name: str, kind: type[_E]) -> _E | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        choices = ", ".join(str(m) for m in kind)
        raise web.HTTPBadRequest(text=f"`{name}` must be one of: {choices}; got {raw!r}") from None


# --- health and metrics ----------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readiness(state: ServerState) -> list[str]:
    """Why the bridge is not ready; empty when it is."""
    reasons: list[str] = []
    try:
        await state.runtime.store.ping()
    except StoreError as exc:
        reasons.append(f"state store unreachable: {exc}")
    if not state.runtime.ready:
        reasons.append("bridge not started: the poll scheduler is not running")
    return reasons


async def readyz(request: web.Request) -> web.Response:
    reasons = await readiness(state_of(request))
    if reasons:
        return json_response({"status": "not ready", "reasons": reasons}, status=503)
    return json_response({"status": "ready", "reasons": []})


async def refresh_outbox_gauges(state: ServerState) -> None:
    stats = await state.runtime.store.outbox_stats()
    metrics = state.runtime.metrics
    metrics.outbox_depth.set(stats.pending)
    metrics.outbox_dead.set(stats.dead)
    metrics.outbox_superseded.set(stats.superseded)
    oldest = stats.oldest_pending
    metrics.outbox_oldest.set((state.clock() - oldest).total_seconds() if oldest else 0.0)


async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        await refresh_outbox_gauges(state)
    except StoreError as exc:
        # Still serve the counters: a scrape that fails hides the very outage it would show.
        log.warning("metrics: outbox gauges not refreshed: %s", exc)
    response = web.Response(body=state.runtime.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


# --- read views ------------------------------------------------------------------------------


async def list_jobs(request: web.Request) -> web.Response:
    state = state_of(request)
    source = request.query.get("source") or None
    job_state = _enum_param(request, "state", JobState)
    limit = _int_param(request, "limit", 1000, low=1, high=10_000)
    jobs = await state.runtime.store.list_jobs(
        source, str(job_state) if job_state else None, limit or 1000
    )
    now = state.clock()
    return json_response({"jobs": [job_json(j, now) for j in jobs]})


async def list_events(request: web.Request) -> web.Response:
    state = state_of(request)
    limit = _int_param(request, "limit", 100, low=1, high=MAX_LIMIT) or 100
    before = _int_param(request, "before", None, low=1)
    source = request.query.get("source") or None
    # One more than asked tells whether another page exists without an empty last page.
    rows = await state.runtime.store.recent_events(limit + 1, before, source)
    page = rows[:limit]
    events = [{**event.as_dict(), "seq": seq} for seq, event in page]
    next_before = page[-1][0] if len(rows) > limit else None
    return json_response({"events": events, "next": next_before})


async def list_outbox(request: web.Request) -> web.Response:
    state = state_of(request)
    status = _enum_param(request, "status", DeliveryStatus)
    limit = _int_param(request, "limit", 200, low=1, high=10_000) or 200
    store = state.runtime.store
    deliveries = await store.list_outbox(status, limit)
    stats = await store.outbox_stats()
    now = state.clock()
    return json_response({
        "deliveries": [delivery_json(d, now) for d in deliveries],
        "stats": stats_json(stats, now),
    })


async def list_sources(request: web.Request) -> web.Response:
    views = await state_of(request).runtime.sources()
    return json_response({"sources": [source_json(v) for v in views]})


# --- operator actions -----------------------------------------------------------------------


def _from_a_browser(request: web.Request) -> bool:
    # Browsers name the page a request comes from (Origin, Sec-Fetch-Site); curl and scripts
    # do not, and `curl -d` labels a JSON body as a form, so only a browser is held to the type.
    return "Origin" in request.headers or "Sec-Fetch-Site" in request.headers


async def _json_body(request: web.Request) -> Any:
    # A browser can post a form (text/plain, urlencoded) to another site without asking first,
    # never application/json: so from a browser only JSON is read, which no other page can send.
    if request.content_type != "application/json" and _from_a_browser(request):
        raise web.HTTPUnsupportedMediaType(text="send the body as Content-Type: application/json")
    body = await request.read()
    try:
        return parse_json(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and too-deep nesting
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None


def _job_id(value: object) -> str | None:
    # eSales ids are 19-digit numbers: accept a JSON number but keep it as text.
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


async def add_watch(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    body = await _json_body(request)
    source = body.get("source") if isinstance(body, dict) else None
    job_id = _job_id(body.get("id")) if isinstance(body, dict) else None
    if not isinstance(source, str) or not source or job_id is None:
        raise web.HTTPBadRequest(text='send {"source": "<source name>", "id": "<job id>"}')
    try:
        added = await state.runtime.watch(source, job_id)
    except KeyError:
        raise web.HTTPNotFound(text=f"no source named {source!r} in the config") from None
    log.info("watching %s job %s (new: %s)", source, job_id, added)
    return json_response({"source": source, "id": job_id, "new": added},
                         status=201 if added else 200)


async def remove_watch(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    source, job_id = request.match_info["source"], request.match_info["id"]
    try:
        removed = await state.runtime.unwatch(source, job_id)
    except KeyError:
        raise web.HTTPNotFound(text=f"no source named {source!r} in the config") from None
    if not removed:
        raise web.HTTPNotFound(text=f"{source} is not watching job {job_id!r}")
    return json_response({"source": source, "id": job_id, "removed": True})


async def retry_one(request: web.Request) -> web.Response:
    return await _one_delivery(request, "retried", "no pending or dead delivery {!r}")


async def drop_one(request: web.Request) -> web.Response:
    return await _one_delivery(request, "dropped", "no delivery {!r} to drop")


async def _one_delivery(request: web.Request, done: str, missing: str) -> web.Response:
    """`POST /v1/outbox/{id}/retry` or `/drop`: the count acted on, 404 when none."""
    state = state_of(request)
    state.auth.check_bearer(request)
    delivery_id = request.match_info["id"]
    act = state.runtime.retry_deliveries if done == "retried" else state.runtime.drop_deliveries
    count = await act(delivery_id)
    if not count:
        raise web.HTTPNotFound(text=missing.format(delivery_id))
    return json_response({done: count})


async def retry_all(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    return json_response({"retried": await state.runtime.retry_deliveries(None)})


# --- push input ------------------------------------------------------------------------------


async def push_event(request: web.Request) -> web.Response:
    """Verify the signature with the source's secret, refuse replays, feed detection."""
    state = state_of(request)
    name = request.match_info["source"]
    key = _push_key(state, name)
    body = await request.read()
    now = state.clock()
    try:
        message = verify(key, request.headers, body, now=now, tolerance=state.replay.tolerance)
    except SignatureError as exc:
        log.warning("push to %s refused: %s", name, exc.problem)
        raise web.HTTPUnauthorized(text=str(exc)) from None
    if not await _claim(state, name, message, now):
        raise web.HTTPConflict(text=f"webhook-id {message.id!r} was already accepted (replay)")
    try:
        payload = parse_json(body)
        events = await state.runtime.push(name, payload)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and too-deep nesting
        await _release(state, name, message)
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
    except SourceError as exc:
        await _release(state, name, message)
        raise web.HTTPBadRequest(text=f"cannot read a job from the body: {exc}") from None
    except BaseException:
        await _release(state, name, message)
        raise
    return json_response({"accepted": True, "events": [e.id for e in events]}, status=202)


async def _claim(state: ServerState, name: str, message: SignedMessage, now: datetime) -> bool:
    """Remember an accepted webhook-id: in the store when several instances share it (a
    replay to any of them is refused), else in this process's bounded memory."""
    store = state.runtime.store
    if store.shared:
        expires = message.timestamp + state.replay.tolerance
        return await store.claim_message(name, message.id, expires, now)
    return state.replay.claim(name, message, now)


async def _release(state: ServerState, name: str, message: SignedMessage) -> None:
    store = state.runtime.store
    if store.shared:
        await store.forget_message(name, message.id)
    else:
        state.replay.release(name, message)


def _push_key(state: ServerState, name: str) -> bytes:
    try:
        config = state.runtime.config.source(name)
    except KeyError:
        raise web.HTTPNotFound(text=f"no source named {name!r} in the config") from None
    kind = source_kind(config)
    if not kind.capabilities.accepts_push:
        takers = ", ".join(k for k, e in SOURCE_KINDS.items() if e.capabilities.accepts_push)
        raise web.HTTPForbidden(
            text=f"source {name!r} is a {config.kind} source, which takes no pushes "
            f"(kinds that do: {takers}); push to a source of one of those kinds"
        )
    secret = config.push_secret()
    if secret is None:
        raise web.HTTPForbidden(
            text=f"source {name!r} has no `secret`, so it refuses pushes: set "
            '`secret = "whsec_..."` on it in rules.toml (Standard Webhooks signing secret)'
        )
    try:
        return secret_key(secret.get_secret_value(), name)
    except BadSecret as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
