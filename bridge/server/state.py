"""What every request handler shares: the runtime, the admin guard, replay memory, the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jinja2
from aiohttp import web

from bridge.secrets import SecretRegistry
from bridge.server.auth import AdminAuth
from bridge.server.push import ReplayGuard
from bridge.server.runtime import Runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerState:
    runtime: Runtime
    auth: AdminAuth
    replay: ReplayGuard
    clock: Callable[[], datetime]
    # Masks every known secret in response bodies, a second line behind the views.
    redactor: SecretRegistry
    templates: jinja2.Environment


STATE = web.AppKey("bridge_state", ServerState)


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE]
