"""A fake Terminal (telematics) syncs API under `/tsp/v1`: `GET /syncs` (newest first,
`status` filter, `limit`, paged with `cursor`/`next`), `GET /syncs/{id}`, bearer auth plus
the `Connection-Token` header. Errors are flat `{code, message, detail}`, as Terminal's.

`webhook_event(id)` builds the webhook Terminal would push for a sync: `sync.requested`,
`sync.started`, `sync.completed` or `sync.failed`, body `{id, type, timestamp, detail:
{connection, sync}}`. The demo lifecycle
requests syncs that run to completion; one fails and is retried under the same id, one
stalls forever at 62%.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.simulators.base import Simulator, bearer_of, hold, json_response, ramp

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_STALL_AT = 62.0
# The demo keeps this many syncs; older finished ones are forgotten.
_DEMO_KEEP = 30
# Terminal's webhook event type for each sync status (there is no `sync.in_progress`).
EVENT_TYPES = {"requested": "sync.requested", "in_progress": "sync.started",
               "completed": "sync.completed", "failed": "sync.failed"}


def error(code: str, message: str, status: int, detail: str | None = None) -> web.Response:
    """Terminal's error body: flat `{code, message, detail}`."""
    return json_response({"code": code, "message": message, "detail": detail}, status=status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TerminalSimulator(Simulator):
    """Terminal syncs. Syncs are raw dicts in the API's shape, newest first in the list."""

    prefix = "/tsp/v1"

    def __init__(self, *, api_key: str = "sk_test_terminal", connection_token: str =
                 "con_tkn_demo", page_size: int = 50, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.api_key = api_key
        self.connection_token = connection_token
        self.page_size = page_size
        self.syncs: dict[str, dict[str, Any]] = {}
        self._spawned = 0

    # --- test controls ----------------------------------------------------------------

    def add_sync(self, sync_id: str | None = None, *, status: str = "requested",
                 progress: float | None = None, failure_reason: str | None = None) -> str:
        sync_id = sync_id or "sync_" + "".join(self.rng.choice(_CROCKFORD) for _ in range(26))
        sync: dict[str, Any] = {"id": sync_id, "status": status, "requestedAt": _now(),
                                "issues": [], "attempts": 1}
        if progress is not None:
            sync["progress"] = progress
        if failure_reason is not None:
            sync["failureReason"] = failure_reason
        self.syncs[sync_id] = sync
        return sync_id

    def set_sync(self, sync_id: str, **changes: Any) -> None:
        """Change raw fields (`status`, `progress`, `failureReason`, `attempts`, ...)."""
        self.syncs[sync_id].update(changes)

    def delete_sync(self, sync_id: str) -> None:
        self.syncs.pop(sync_id, None)
        self.plans.drop(sync_id)

    def webhook_event(self, sync_id: str, event_type: str | None = None) -> dict[str, Any]:
        """The webhook body Terminal sends when a sync changes."""
        sync = self.syncs[sync_id]
        kind = event_type or EVENT_TYPES[sync["status"]]
        connection = {"id": "conn_01GV12VR4DJP70GD1ZBK0SDWFH",
                      "provider": {"code": "geotab", "name": "Geotab"},
                      "externalId": "demo", "tags": []}
        return {"id": "evt_" + sync_id.removeprefix("sync_"), "type": kind,
                "timestamp": _now(), "detail": {"connection": connection, "sync": dict(sync)}}

    # --- the API ----------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get("/tsp/v1/syncs", self._list), web.get("/tsp/v1/syncs/{id}", self._show)]

    def authorize(self, request: web.Request) -> web.Response | None:
        if bearer_of(request) != self.api_key:
            return self.unauthorized()
        if request.headers.get("Connection-Token") != self.connection_token:
            return error("unauthorized", "Invalid or missing Connection-Token", 401)
        return None

    def unauthorized(self) -> web.Response:
        return error("unauthorized", "Invalid API key provided", 401)

    def drifted_body(self) -> Any:
        return {"data": list(self.syncs.values()), "pagination": {"cursor": None}}

    async def _list(self, request: web.Request) -> web.Response:
        listed = list(reversed(self.syncs.values()))
        status = request.query.get("status")
        if status is not None:
            if status not in EVENT_TYPES:
                return error("invalid_request", f"Invalid status: {status}", 400)
            listed = [sync for sync in listed if sync["status"] == status]
        cursor = request.query.get("cursor")
        start = 0
        if cursor:
            if not cursor.startswith("cur_") or not cursor[4:].isdigit():
                return error("invalid_cursor", "Cursor is invalid", 400)
            start = int(cursor[4:])
        try:
            size = min(int(request.query.get("limit", "100")), self.page_size)
        except ValueError:
            size = self.page_size
        more = start + size < len(listed)
        return json_response({"results": listed[start:start + size],
                              "next": f"cur_{start + size}" if more else None})

    async def _show(self, request: web.Request) -> web.Response:
        sync = self.syncs.get(request.match_info["id"])
        if sync is None:
            return error("not_found", "Sync not found", 404)
        return json_response(sync)

    # --- demo lifecycle ---------------------------------------------------------------

    def tick(self) -> None:
        super().tick()
        if self.ticks % 3 == 1:
            self._spawn()
        for sync_id, step in self.plans.advance():
            if sync_id in self.syncs:
                self.syncs[sync_id].update(step)
        self._forget_old()

    def _spawn(self) -> None:
        """A new sync. The second stalls at 62% forever; every third fails once and is
        retried under the same id."""
        self._spawned += 1
        sync_id = self.add_sync()
        steps: list[dict[str, Any]] = [*hold(self.rng.randint(0, 1)),
                                       {"status": "in_progress", "progress": 0}]
        progress = ramp(self.rng, 0, 100, low=10, high=35)
        if self._spawned == 2:
            steps += [{"progress": p} for p in progress if p < _STALL_AT]
            steps.append({"progress": _STALL_AT})
        elif self._spawned % 3 == 0:
            half = [{"progress": p} for p in progress if p < 50]
            steps += [*half, {"status": "failed",
                              "failureReason": "Provider API returned 503 (Samsara): retrying"},
                      *hold(2), {"status": "requested", "failureReason": None, "attempts": 2},
                      {"status": "in_progress", "progress": 0},
                      *({"progress": p} for p in progress[:-1]), self._completed()]
        else:
            steps += [*({"progress": p} for p in progress[:-1]), self._completed()]
        self.plans.plan(sync_id, steps)

    def _completed(self) -> dict[str, Any]:
        return {"status": "completed", "progress": 100, "completedAt": _now()}

    def _forget_old(self) -> None:
        finished = [s for s, sync in self.syncs.items()
                    if sync["status"] in ("completed", "failed") and self.plans.idle(s)]
        for sync_id in finished[: max(0, len(self.syncs) - _DEMO_KEEP)]:
            self.delete_sync(sync_id)
