"""Silences over HTTP: `GET/POST /v1/silences`, `DELETE /v1/silences/{id}`, dashboard forms.

Writes are admin-guarded like every other write route (bridge.server.auth); the silence is
stored at once (bridge.store.silences), so every instance sharing the store applies it from
its next poll on. Bodies are checked by `bridge.silences.new_silence`, whose message says
what to send instead.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bridge.server.api import _json_body, json_response
from bridge.server.dashboard import _authorized_form, _back
from bridge.server.state import ServerState, state_of
from bridge.silences import Silence, SilenceError, new_silence, parse_matcher_args

log = logging.getLogger(__name__)


def silence_json(silence: Silence, state: ServerState) -> dict[str, Any]:
    return {**silence.as_dict(), "status": str(silence.status(state.clock()))}


async def create(state: ServerState, body: object) -> Silence:
    """Validate and store a silence; SilenceError for a body that cannot be one."""
    silence = new_silence(body, state.clock())
    await state.runtime.store.add_silence(silence)
    log.info("silence %s added by %s: %s%s", silence.id, silence.author or "(no author)",
             dict(silence.matchers), f" ({silence.comment})" if silence.comment else "")
    return silence


async def list_silences(request: web.Request) -> web.Response:
    state = state_of(request)
    expired = request.query.get("expired", "") in ("1", "true", "yes")
    silences = await state.runtime.store.list_silences(state.clock(), expired=expired)
    return json_response({"silences": [silence_json(s, state) for s in silences]})


async def add_silence(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    body = await _json_body(request)
    try:
        silence = await create(state, body)
    except SilenceError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return json_response(silence_json(silence, state), status=201)


async def expire_silence(request: web.Request) -> web.Response:
    state = state_of(request)
    state.auth.check_bearer(request)
    silence_id = request.match_info["id"]
    if not await state.runtime.store.expire_silence(silence_id, state.clock()):
        raise web.HTTPNotFound(text=f"no silence {silence_id!r} in force (see GET /v1/silences)")
    log.info("silence %s expired", silence_id)
    found = await state.runtime.store.get_silence(silence_id)
    return json_response(silence_json(found, state) if found else {"id": silence_id})


# --- dashboard forms ----------------------------------------------------------------------------


async def form_add(request: web.Request) -> web.StreamResponse:
    """The dashboard's form: matchers as lines or spaces of `field=glob`, a duration or
    until resolved, comment, author."""
    form = await _authorized_form(request)
    until_resolved = form.get("until_resolved") == "on"
    body: dict[str, Any] = {
        "comment": str(form.get("comment") or ""),
        "author": str(form.get("author") or ""),
        "until_resolved": until_resolved,
    }
    if not until_resolved:
        body["duration"] = str(form.get("duration") or "")
    try:
        body["matchers"] = parse_matcher_args(str(form.get("matchers") or "").split())
        await create(state_of(request), body)
    except SilenceError as exc:
        raise web.HTTPBadRequest(text=f"silence not added: {exc}") from None
    raise _back(form, "silenced")


async def form_expire(request: web.Request) -> web.StreamResponse:
    form = await _authorized_form(request)
    state = state_of(request)
    await state.runtime.store.expire_silence(request.match_info["id"], state.clock())
    raise _back(form, "expired")
