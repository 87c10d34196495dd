"""What every request handler shares: the runtime, the admin guard, replay memory, the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
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
    # Work a handler left running after its answer (a Slack press's edit waiting at the
    # gate); cancelled when the app shuts down.
    background: set[asyncio.Task[None]] = field(default_factory=set)


STATE = web.AppKey("bridge_state", ServerState)


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE]


async def stop_background(app: web.Application) -> None:
    """`on_cleanup`: what handlers left running is given up (a press is recorded already)."""
    tasks = list(app[STATE].background)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
