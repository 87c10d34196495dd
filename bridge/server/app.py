"""The HTTP server's route table and middlewares: `create_app(runtime, admin_token=...)`.

    GET  /                              dashboard          GET  /ui/live   its live part
    GET  /healthz  /readyz  /metrics    probes, Prometheus
    GET  /v1/jobs /v1/events /v1/outbox /v1/sources        JSON views
    GET  /v1/schema  /v1/schema/{type}                     webhook event catalog, schemas
    POST /v1/watches   DELETE /v1/watches/{source}/{id}    track a job id   (admin)
    POST /v1/outbox/{id}/retry|drop   POST /v1/outbox/retry                 (admin)
    POST /v1/events/{source}                               push input (signature)
    GET|POST /v1/silences   DELETE /v1/silences/{id}       silences          (admin writes)
    POST /v1/slack/interactions   GET /v1/actions          Slack buttons (Slack signature)
    POST /v1/jtl/{source}/syncs/{id}/configure|restart     JTL sync controls (admin)
    POST /ui/...                                           dashboard forms  (admin)

Errors under /v1 answer `{"error": message}`; bodies are capped; every response body is
passed through the secret registry (`bridge.secrets.REGISTRY`) as a last line of defence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from bridge.errors import StoreError
from bridge.secrets import REGISTRY
from bridge.server import api, dashboard, jtl, schema, silences, slack_interactions
from bridge.server.auth import AdminAuth, Handler
from bridge.server.push import ReplayGuard
from bridge.server.runtime import Runtime
from bridge.server.state import STATE, ServerState, stop_background

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
STATIC = Path(__file__).parent / "static"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    runtime: Runtime,
    *,
    admin_token: str | None,
    listen: str | None = None,
    clock: Callable[[], datetime] = _utc_now,
    max_body: int = MAX_BODY,
) -> web.Application:
    """The aiohttp application serving `runtime`.

    `listen` (default: the config's `[bridge] listen`) decides whether write routes are open
    without a token: only on a loopback address. `clock` is injectable for tests.
    """
    # The one registry: what it masks here it masks in the logs too.
    REGISTRY.add_config(runtime.config)
    if admin_token:
        REGISTRY.add([admin_token])
    state = ServerState(
        runtime=runtime,
        auth=AdminAuth(admin_token, listen or runtime.config.bridge.listen),
        replay=ReplayGuard(),
        clock=clock,
        redactor=REGISTRY,
        templates=dashboard.make_environment(),
    )
    app = web.Application(
        client_max_size=max_body,
        middlewares=[redact_middleware, errors_middleware],
    )
    app[STATE] = state
    app.on_cleanup.append(stop_background)
    _add_routes(app)
    return app


def _add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", dashboard.page)
    r.add_get("/ui/live", dashboard.live)
    r.add_post("/ui/outbox/retry", dashboard.retry_all)
    r.add_post("/ui/outbox/{id}/retry", dashboard.retry_one)
    r.add_post("/ui/outbox/{id}/drop", dashboard.drop_one)
    r.add_post("/ui/sign-in", dashboard.sign_in)
    r.add_post("/ui/sign-out", dashboard.sign_out)
    r.add_static("/static", STATIC, append_version=False)
    r.add_get("/healthz", api.healthz)
    r.add_get("/readyz", api.readyz)
    r.add_get("/metrics", api.metrics)
    r.add_get("/v1/jobs", api.list_jobs)
    r.add_get("/v1/events", api.list_events)
    r.add_get("/v1/outbox", api.list_outbox)
    r.add_get("/v1/sources", api.list_sources)
    r.add_get("/v1/schema", schema.list_schemas)
    r.add_get("/v1/schema/{type}", schema.get_schema)
    r.add_post("/v1/watches", api.add_watch)
    r.add_delete("/v1/watches/{source}/{id}", api.remove_watch)
    r.add_post("/v1/outbox/retry", api.retry_all)
    r.add_post("/v1/outbox/{id}/retry", api.retry_one)
    r.add_post("/v1/outbox/{id}/drop", api.drop_one)
    r.add_post("/v1/events/{source}", api.push_event)
    r.add_get("/v1/silences", silences.list_silences)
    r.add_post("/v1/silences", silences.add_silence)
    r.add_delete("/v1/silences/{id}", silences.expire_silence)
    r.add_post("/v1/slack/interactions", slack_interactions.interactions)
    r.add_get("/v1/actions", slack_interactions.list_actions)
    jtl.add_routes(r)
    r.add_post("/ui/silences", silences.form_add)
    r.add_post("/ui/silences/{id}/expire", silences.form_expire)


def _is_api(request: web.Request) -> bool:
    path = request.path
    return path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals into `{"error": ...}` under /v1 and a small page elsewhere."""
    try:
        return await handler(request)
    except web.HTTPRedirection:
        raise
    except web.HTTPException as exc:
        return _error(request, exc.status, _message(exc), exc.headers.get("WWW-Authenticate"))
    except StoreError as exc:
        log.warning("%s %s: state store failed: %s", request.method, request.path, exc)
        return _error(request, 503, f"state store unavailable: {exc}", None)


def _message(exc: web.HTTPException) -> str:
    if exc.status == 413:
        return f"request body too large: the limit is {MAX_BODY // 1024} KiB"
    text = exc.text or ""
    # aiohttp's own refusals read "404: Not Found"; ours carry a sentence.
    if not text or text.startswith(f"{exc.status}:"):
        return exc.reason
    return text


def _error(request: web.Request, status: int, message: str,
           challenge: str | None) -> web.Response:
    if _is_api(request):
        response = api.json_response({"error": message}, status=status)
    else:
        response = dashboard.error_page(request, status, message)
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


@web.middleware
async def redact_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mask configured secrets in every body we build, and set headers every page wants."""
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # "same-origin", not "no-referrer": with no-referrer, Chromium sends `Origin: null` on
    # form posts, which the same-origin check must refuse.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    redactor = request.app[STATE].redactor
    if redactor and isinstance(response, web.Response) and isinstance(response.body, bytes):
        text = response.body.decode("utf-8", errors="replace")
        masked = redactor.redact(text)
        if masked != text:
            response.body = masked.encode()
    return response
