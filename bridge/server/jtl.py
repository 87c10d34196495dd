"""JTL sync controls over HTTP, for `bridge jtl configure|restart` (admin-guarded writes).

    POST /v1/jtl/{source}/syncs/{sync_id}/configure  {"interval": "PT15M",
                                                       "configs": [{"identifier", "value"}]}
    POST /v1/jtl/{source}/syncs/{sync_id}/restart

The bridge makes the call with the source's own client (its token, tenant headers), so the
operator needs only the bridge's admin token. Answers JTL's answer: the changed
`WorkerSyncItem` (configure) or `{"actionId", "requestedAt"}` (restart). A request JTL
refuses is a 400 with JTL's reason; an unreachable JTL a 502.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from bridge.errors import SourceError
from bridge.server.api import _json_body, json_response
from bridge.server.state import state_of
from bridge.sources.jtl import JtlWorkers
from bridge.sources.jtl_control import ConfigValue, ControlError, configure_body

log = logging.getLogger(__name__)


def _jtl_source(request: web.Request) -> JtlWorkers:
    name = request.match_info["source"]
    try:
        source = state_of(request).runtime.source(name)
    except KeyError:
        raise web.HTTPNotFound(text=f"no source {name!r} (see GET /v1/sources)") from None
    if not isinstance(source, JtlWorkers):
        raise web.HTTPBadRequest(text=f"source {name!r} is not a jtl source")
    return source


def _configs(body: dict[str, Any]) -> list[ConfigValue]:
    configs = body.get("configs") or []
    if not isinstance(configs, list) or not all(
            isinstance(c, dict) and isinstance(c.get("identifier"), str) for c in configs):
        raise ControlError('configs must be a list of {"identifier": "...", "value": "..."}')
    return [ConfigValue(c["identifier"], str(c.get("value", ""))) for c in configs]


async def _answer(source: JtlWorkers, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """JTL's answer to `call`: a refusal is a 400 with JTL's reason, no answer a 502."""
    try:
        return await call
    except ControlError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except SourceError as exc:
        raise web.HTTPBadGateway(text=f"JTL source {source.name}: {exc}") from None


async def configure(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    source, sync_id = _jtl_source(request), request.match_info["sync_id"]
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='expected {"interval": "PT15M", "configs": [...]}')
    interval = body.get("interval")
    if interval is not None and not isinstance(interval, str):
        raise web.HTTPBadRequest(text="interval must be a string such as PT15M")
    try:
        request_body = configure_body(interval, _configs(body))
    except ControlError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    item = await _answer(source, source.configure(sync_id, request_body))
    log.info("JTL sync %s/%s configured: %s", source.name, sync_id, body)
    return json_response(item)


async def restart(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    source, sync_id = _jtl_source(request), request.match_info["sync_id"]
    answer = await _answer(source, source.control.run(sync_id, "restart"))
    log.info("JTL sync %s/%s restart requested: %s", source.name, sync_id, answer)
    return json_response(answer)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/jtl/{source}/syncs/{sync_id}/configure", configure)
    router.add_post("/v1/jtl/{source}/syncs/{sync_id}/restart", restart)
