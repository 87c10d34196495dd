"""A fake JTL Cloud ERP: `GET /erp/v1/workers/status`, the sync controls of v2 and the
OAuth2 token endpoint.

Sync controls (bridge.sources.jtl_control): `GET /erp/v2/workers` lists each sync as a
`WorkerSyncItem`; `POST /erp/v2/workers/{syncId}` is seed 001's "Configure Sync" (body
`{"interval": "PT15M", "configs": [{"identifier", "value"}]}`, answer the changed
`WorkerSyncItem`); `POST /erp/v2/worker/syncs/{syncId}/start|stop|restart` is run control as
of v2.3 (answer `{"actionId", "requestedAt"}`). The deprecated `PUT /erp/v2/workers/{syncId}`
with `{"action": 0|1|2}` is answered too. Every control request's body is kept in
`control_log` (method, path, body), so tests check the request shape.

The API wants a bearer token (a fixed `token`, or one issued by `POST /oauth2/token` for
client credentials that has not expired), `x-appid`, `x-appversion` and the tenant's
`x-tenant-id`: without a known tenant it answers 412 (`tenant_refusal = 401`: 401, as
JTL's error guide says the real API does). Tokens live `token_ttl` seconds by
`clock`; `token_requests` counts issued tokens and `revoke_tokens()` invalidates them early.
`lowercase_keys=True` answers in the other API version's casing (`state`, `progress`).
Status answers carry JTL's `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Interval-Length-Seconds` (`rate_limit` requests per `rate_interval` seconds
by `clock`; `new_interval()` starts a new one at once); past the limit it answers 429
without Retry-After, as JTL documents none.
The demo lifecycle runs recurring syncs: SuccessfullFinished -> Starting -> Running with
progress -> SuccessfullFinished again, sometimes SleepingError with a message.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bridge.simulators.base import Simulator, basic_of, bearer_of, hold, json_response, ramp
from bridge.sources.jtl_control import DURATION

TOKEN_PATH = "/oauth2/token"
STATUS_PATH = "/erp/v1/workers/status"
WORKERS_PATH = "/erp/v2/workers"
RUN_CONTROL = ("start", "stop", "restart")
# (sales channel, sync name) of the demo's syncs.
_DEMO_SYNCS = (("Amazon DE", "orders"), ("eBay", "stock levels"), ("Shopify", "prices"),
               ("JTL-Wawi", "invoice export"), ("Otto Market", "listings"))
_ERRORS = ("Amazon MWS throttled the feed upload (QuotaExceeded)",
           "eBay token expired: reconnect the eBay account in JTL-Wawi")


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


class JtlSimulator(Simulator):
    """JTL worker syncs keyed by their `Identifier`, with the API's PascalCase fields."""

    prefix = "/erp"
    unguarded = frozenset({TOKEN_PATH})

    def __init__(self, *, tenant_id: str = "6f1c2b7e-5d4a-4c3b-9a8f-1e2d3c4b5a69",
                 token: str | None = None, client_id: str = "bridge-client",
                 client_secret: str = "bridge-secret", token_ttl: float = 3600.0,
                 lowercase_keys: bool = False, clock: Callable[[], float] = time.monotonic,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.tenant_id = tenant_id
        # The status a missing or unknown x-tenant-id gets: 412, or 401 like the real API.
        self.tenant_refusal = 412
        self.token = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = float(token_ttl)
        # False: token answers carry no expires_in (allowed by RFC 6749, section 5.1).
        self.announce_expiry = True
        self.lowercase_keys = lowercase_keys
        self.clock = clock
        self.token_requests = 0
        self.rate_limit = 600
        self.rate_interval = 60
        self.used_this_interval = 0
        self._interval_started = clock()
        self.syncs: dict[str, dict[str, Any]] = {}
        self._issued: dict[str, float] = {}
        self._recurring: set[str] = set()
        # The WorkerSyncItem of each sync, without `identifier` (that is the key).
        self.items: dict[str, dict[str, Any]] = {}
        self.control_log: list[tuple[str, str, Any]] = []

    @property
    def token_url(self) -> str:
        return self.origin + TOKEN_PATH

    # --- test controls ----------------------------------------------------------------

    def add_sync(self, sync_id: str | None = None, *, state: int = 3, progress: float = -1,
                 text: str = "", sync_name: str = "Orders",
                 sales_channel: str = "Amazon DE", interval: str = "PT10M") -> str:
        sync_id = sync_id or str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        now = datetime.now(UTC)
        # Derived, not drawn from `rng`: the demo's seeded runs stay as they were.
        config_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"jtl-config:{sync_id}"))
        self.items[sync_id] = {
            "syncName": sync_name, "salesChannelName": sales_channel,
            "salesChannelId": f"SC-{sync_id[:8]}", "interval": interval,
            "reportProgress": True,
            "configurations": [{
                "identifier": config_id, "displayName": "Batch size",
                "displayDescription": "Orders fetched per run", "type": "Int32",
                "currentValue": "100", "isRequired": True}],
        }
        self.syncs[sync_id] = {
            "Identifier": sync_id, "State": state, "ProgressText": text, "Progress": progress,
            "LastSync": _stamp(now - timedelta(minutes=15)),
            "NextSync": _stamp(now + timedelta(minutes=15)),
        }
        return sync_id

    def set_sync(self, sync_id: str, **changes: Any) -> None:
        """Change raw fields (`State`, `Progress`, `ProgressText`, `LastSync`, `NextSync`)."""
        self.syncs[sync_id].update(changes)

    def remove_sync(self, sync_id: str) -> None:
        self.syncs.pop(sync_id, None)
        self.plans.drop(sync_id)
        self._recurring.discard(sync_id)

    def new_interval(self) -> None:
        """A new rate-limit interval: the budget is full again."""
        self.used_this_interval = 0
        self._interval_started = self.clock()

    def budget_headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - self.used_this_interval)),
                "X-RateLimit-Interval-Length-Seconds": str(self.rate_interval)}

    def revoke_tokens(self) -> None:
        """Every issued token is rejected from now on, before its announced expiry."""
        self._issued.clear()

    # --- the API ----------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get(STATUS_PATH, self._status), web.post(TOKEN_PATH, self._token),
                web.get(WORKERS_PATH, self._workers),
                web.post(WORKERS_PATH + "/{sync_id}", self._configure),
                web.put(WORKERS_PATH + "/{sync_id}", self._control_v2),
                web.post("/erp/v2/worker/syncs/{sync_id}/{action}", self._control)]

    def authorize(self, request: web.Request) -> web.Response | None:
        token = bearer_of(request)
        valid = token is not None and (
            token == self.token or self._issued.get(token, 0.0) > self.clock())
        if not valid:
            return self.unauthorized()
        tenant = request.headers.get("x-tenant-id", "")
        if not tenant or tenant != self.tenant_id:
            title = "Unauthorized" if self.tenant_refusal == 401 else "Precondition Failed"
            return json_response({"title": title, "status": self.tenant_refusal,
                                  "detail": "Missing or unknown x-tenant-id header"},
                                 status=self.tenant_refusal)
        for header in ("x-appid", "x-appversion"):
            if not request.headers.get(header):
                return json_response({"title": "Bad Request", "status": 400,
                                      "detail": f"Missing required header {header}"}, status=400)
        return None

    def unauthorized(self) -> web.Response:
        return json_response({"title": "Unauthorized", "status": 401,
                              "detail": "Invalid or expired access token"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def drifted_body(self) -> Any:
        return {"items": [{"SyncId": s, "Status": "OK"} for s in self.syncs]}

    async def _status(self, request: web.Request) -> web.Response:
        if self.clock() - self._interval_started >= self.rate_interval:
            self.new_interval()
        self.used_this_interval += 1
        if self.used_this_interval > self.rate_limit:
            return json_response({"errorCode": "TOO_MANY_REQUESTS", "errorMessage":
                                  "Rate limit exceeded"}, 429, self.budget_headers())
        wanted = request.query.get("syncId")
        syncs = [s for s in self.syncs.values() if wanted is None or s["Identifier"] == wanted]
        if self.lowercase_keys:
            syncs = [{k[0].lower() + k[1:]: v for k, v in s.items()} for s in syncs]
        return json_response(syncs, headers=self.budget_headers())

    def item(self, sync_id: str) -> dict[str, Any]:
        return {"identifier": sync_id, **self.items[sync_id]}

    def _problem(self, status: int, detail: str) -> web.Response:
        title = {400: "Bad Request", 404: "Not Found"}[status]
        return json_response({"title": title, "status": status, "detail": detail},
                             status=status)

    async def _workers(self, request: web.Request) -> web.Response:
        return json_response([self.item(s) for s in self.syncs if s in self.items])

    async def _configure(self, request: web.Request) -> web.Response:
        sync_id = request.match_info["sync_id"]
        body = await _json_object(request)
        self.control_log.append(("POST", request.path, body))
        if sync_id not in self.items:
            return self._problem(404, f"No sync with id {sync_id}")
        item = self.items[sync_id]
        interval = body.get("interval")
        if interval is not None and not (isinstance(interval, str) and DURATION.match(interval)):
            return self._problem(400, f"interval {interval!r} is not an ISO 8601 duration")
        configs = {c["identifier"]: c for c in item["configurations"]}
        for given in body.get("configs") or []:
            if given.get("identifier") not in configs:
                return self._problem(400, f"No configuration {given.get('identifier')!r} "
                                          f"on sync {sync_id}")
        for given in body.get("configs") or []:
            configs[given["identifier"]]["currentValue"] = str(given.get("value"))
        if interval is not None:
            item["interval"] = interval
        return json_response(self.item(sync_id))

    async def _control(self, request: web.Request) -> web.Response:
        sync_id, action = request.match_info["sync_id"], request.match_info["action"]
        body = await request.read()
        self.control_log.append(("POST", request.path, body.decode() or None))
        if action not in RUN_CONTROL:
            return self._problem(404, f"No such action {action!r}")
        return self._run(sync_id, action)

    async def _control_v2(self, request: web.Request) -> web.Response:
        """Deprecated since v2.3: `{"action": 0|1|2}` = start/stop/restart, no body back."""
        sync_id = request.match_info["sync_id"]
        body = await _json_object(request)
        self.control_log.append(("PUT", request.path, body))
        action = body.get("action")
        if action not in (0, 1, 2):
            return self._problem(400, "action must be 0 (start), 1 (stop) or 2 (restart)")
        answer = self._run(sync_id, RUN_CONTROL[action])
        return answer if answer.status != 200 else web.Response(status=200)

    def _run(self, sync_id: str, action: str) -> web.Response:
        if sync_id not in self.syncs:
            return self._problem(404, f"No sync with id {sync_id}")
        # The worker takes the request; the next status shows the sync starting (or stopped).
        state = 7 if action == "stop" else 1
        text = "Stopped by request" if action == "stop" else "Starting"
        self.syncs[sync_id].update({"State": state, "Progress": -1 if state == 7 else 0,
                                    "ProgressText": text})
        return json_response({"actionId": action.capitalize(),
                              "requestedAt": _stamp(datetime.now(UTC))})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = str(form.get("client_id", "")), str(
            form.get("client_secret", ""))
        client_id, client_secret = basic_of(request) or (client_id, client_secret)
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, status=400)
        if client_id != self.client_id or client_secret != self.client_secret:
            return json_response({"error": "invalid_client"}, status=401)
        self.token_requests += 1
        token = secrets.token_urlsafe(24)
        self._issued[token] = self.clock() + self.token_ttl
        ttl: float | int = int(self.token_ttl) if self.token_ttl.is_integer() else self.token_ttl
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer",
                                "scope": "jtl-erp"}
        if self.announce_expiry:
            body["expires_in"] = ttl
        return json_response(body)

    # --- demo lifecycle ---------------------------------------------------------------

    def plan_demo(self) -> None:
        """Recurring syncs, plus one deactivated and one suspended sync that never move."""
        def add(n: int, state: int, text: str) -> str:
            channel, sync = _DEMO_SYNCS[n]
            return self.add_sync(state=state, text=f"{channel} {sync}: {text}",
                                 sync_name=sync, sales_channel=channel)

        for n in range(3):
            sync_id = add(n, 3, "up to date")
            self._recurring.add(sync_id)
            self.plans.plan(sync_id, hold(1 + 2 * n))
        add(3, 7, "deactivated")
        add(4, 0, "suspended by the administrator")

    def tick(self) -> None:
        super().tick()
        for sync_id, step in self.plans.advance():
            if sync_id in self.syncs:
                self.syncs[sync_id].update(step)
        for sync_id in sorted(self._recurring):
            if self.plans.idle(sync_id) and sync_id in self.syncs:
                self.plans.plan(sync_id, self._cycle())

    def _cycle(self) -> list[dict[str, Any]]:
        """One run of a recurring sync: start, progress, finish (or sleep on an error), wait."""
        steps: list[dict[str, Any]] = [{"State": 1, "Progress": 0, "ProgressText": "Starting"}]
        progress = ramp(self.rng, 0, 100, low=15, high=40)
        failing = self.rng.random() < 0.25
        if failing:
            progress = [p for p in progress if p < 70]
        steps += [{"State": 2, "Progress": p, "ProgressText": f"Synchronising ({p:.0f}%)"}
                  for p in progress[:-1]]
        now = _stamp(datetime.now(UTC))
        if failing:
            steps.append({"State": 4, "Progress": -1, "LastSync": now,
                          "ProgressText": self.rng.choice(_ERRORS)})
        else:
            steps.append({"State": 3, "Progress": -1, "LastSync": now,
                          "ProgressText": "Finished successfully"})
        return steps + hold(self.rng.randint(2, 4))
