"""A fake Zendesk job-statuses API: `GET /api/v2/job_statuses.json` (cursor pages),
`GET /api/v2/job_statuses/show_many.json?ids=a,b` and `GET /api/v2/job_statuses/{id}.json`,
with basic `email/token` or bearer auth.

Like the real API it lists only `list_limit` jobs, sorted by completion, then creation,
newest first (unfinished jobs have no completion date and sort after the finished ones,
as NULLs do in a descending SQL sort), answers an expired (deleted) job with 404
`RecordNotFound` (and leaves it out of `show_many`), counts `progress` in tasks out of
`total`, and reports failed items of a `completed` job in `results[]` with `error` and
`details`. Every answer carries `X-Rate-Limit` / `X-Rate-Limit-Remaining`
(`rate_limit` requests a minute by `clock`; `minute()` starts a new minute at once). The
demo lifecycle queues bulk jobs that work through their tasks; one completes with failed
items, one fails, one expires mid-way.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from bridge.simulators.base import Simulator, basic_of, bearer_of, hold, json_response, ramp

_NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
_TITLES = ("Printer on fire", "I accidentally the whole bottle", "Refund for order 1042",
           "Login loop on iOS", "Invoice missing VAT id", "Shipping label blank")


class ZendeskSimulator(Simulator):
    """Zendesk job statuses. Jobs are raw dicts in the API's own shape, newest first."""

    def __init__(self, *, email: str = "agent@example.com", api_token: str = "zd-api-token",
                 bearer_token: str | None = None, page_size: int = 100, list_limit: int = 100,
                 rate_limit: int = 700, clock: Callable[[], float] = time.monotonic,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.email = email
        self.api_token = api_token
        self.bearer_token = bearer_token
        self.page_size = page_size
        self.list_limit = list_limit
        self.jobs: dict[str, dict[str, Any]] = {}
        self.rate_limit = rate_limit
        self.used_this_minute = 0
        self.clock = clock
        self._minute_started = clock()
        self._spawned = 0
        # Order of creation and of completion, for the list's sort.
        self._created: dict[str, int] = {}
        self._finished_at: dict[str, int] = {}
        self._sequence = 0

    # --- test controls ----------------------------------------------------------------

    def add_job(self, job_id: str | None = None, *, status: str = "queued",
                total: int | None = None, progress: int | None = None,
                message: str | None = None, results: list[dict[str, Any]] | None = None) -> str:
        job_id = job_id or f"{self.rng.getrandbits(128):032x}"
        self.jobs[job_id] = {
            "id": job_id, "url": self._url(job_id), "total": total, "progress": progress,
            "status": status, "message": message, "results": results,
        }
        self._created[job_id] = self._next()
        self._note_completion(job_id)
        return job_id

    def set_job(self, job_id: str, **changes: Any) -> None:
        """Change raw fields (`status`, `progress`, `total`, `message`, `results`)."""
        self.jobs[job_id].update(changes)
        self._note_completion(job_id)

    def minute(self) -> None:
        """A new rate-limit minute: the budget is full again."""
        self.used_this_minute = 0
        self._minute_started = self.clock()

    def _count_request(self) -> None:
        if self.clock() - self._minute_started >= 60:
            self.minute()
        self.used_this_minute += 1

    def listed(self) -> list[dict[str, Any]]:
        """The jobs as the list endpoint orders them: finished by completion, newest first,
        then unfinished by creation, newest first."""
        def key(job_id: str) -> tuple[int, int]:
            return (self._finished_at.get(job_id, -1), self._created[job_id])
        return [self.jobs[j] for j in sorted(self.jobs, key=key, reverse=True)]

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _note_completion(self, job_id: str) -> None:
        done = self.jobs[job_id]["status"] in ("completed", "failed", "killed")
        if done and job_id not in self._finished_at:
            self._finished_at[job_id] = self._next()
        elif not done:
            self._finished_at.pop(job_id, None)

    def expire(self, job_id: str) -> None:
        """The job status expires: from now on it answers 404 RecordNotFound."""
        self.jobs.pop(job_id, None)
        self._created.pop(job_id, None)
        self._finished_at.pop(job_id, None)
        self.plans.drop(job_id)

    # --- the API ----------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [
            web.get("/api/v2/job_statuses.json", self._list),
            # Before `{id}.json`, which would match it too.
            web.get("/api/v2/job_statuses/show_many.json", self._show_many),
            web.get("/api/v2/job_statuses/{id}.json", self._show),
        ]

    def budget_headers(self) -> dict[str, str]:
        """Zendesk's per-minute rate-limit headers, counting this request."""
        self._count_request()
        return {"X-Rate-Limit": str(self.rate_limit),
                "X-Rate-Limit-Remaining": str(max(0, self.rate_limit - self.used_this_minute))}

    def authorize(self, request: web.Request) -> web.Response | None:
        if self.clock() - self._minute_started >= 60:
            self.minute()
        if self.used_this_minute >= self.rate_limit:
            self._count_request()
            return json_response({"error": "TooManyRequests"}, 429,
                                 {"Retry-After": "60", "X-Rate-Limit": str(self.rate_limit),
                                  "X-Rate-Limit-Remaining": "0"})
        token = bearer_of(request)
        if token is not None and self.bearer_token is not None and token == self.bearer_token:
            return None
        if basic_of(request) == (f"{self.email}/token", self.api_token):
            return None
        return self.unauthorized()

    def unauthorized(self) -> web.Response:
        return json_response({"error": "Couldn't authenticate you"}, status=401)

    def drifted_body(self) -> Any:
        return {"jobs": list(self.jobs.values()), "next": None}

    async def _list(self, request: web.Request) -> web.Response:
        listed = self.listed()[: self.list_limit]
        try:
            size = min(int(request.query.get("page[size]", "100")), 100, self.page_size)
            start = _decode_cursor(request.query.get("page[after]"))
        except ValueError:
            return json_response({"error": "InvalidPaginationParameter"}, status=400)
        page = listed[start:start + size]
        more = start + size < len(listed)
        after = _encode_cursor(start + size) if more else None
        next_link = None
        if after:
            next_link = str(request.url.with_query({"page[size]": str(size),
                                                    "page[after]": after}))
        return json_response({
            "job_statuses": page,
            "meta": {"has_more": more, "after_cursor": after,
                     "before_cursor": _encode_cursor(start) if start else None},
            "links": {"next": next_link, "prev": None},
        }, headers=self.budget_headers())

    async def _show_many(self, request: web.Request) -> web.Response:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids:
            return json_response({"error": "InvalidValue",
                                  "description": "ids is required"}, status=400)
        if len(ids) > 100:
            return json_response({"error": "InvalidValue",
                                  "description": "Too many ids (max 100)"}, status=400)
        found = [self.jobs[i] for i in dict.fromkeys(ids) if i in self.jobs]
        return json_response({"job_statuses": found}, headers=self.budget_headers())

    async def _show(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return json_response(_NOT_FOUND, status=404, headers=self.budget_headers())
        return json_response({"job_status": job}, headers=self.budget_headers())

    def _url(self, job_id: str) -> str:
        return f"{self.origin or 'https://example.zendesk.com'}/api/v2/job_statuses/{job_id}.json"

    # --- demo lifecycle ---------------------------------------------------------------

    def tick(self) -> None:
        super().tick()
        if self.ticks % 4 == 1:
            self._spawn()
        for job_id, step in self.plans.advance():
            if step.get("_gone"):
                self.expire(job_id)
            elif job_id in self.jobs:
                self.set_job(job_id, **step)

    def _spawn(self) -> None:
        """A new bulk job. Every fourth job ends badly, in turn: failed items, failure,
        expiry while working."""
        self._spawned += 1
        total = self.rng.randint(8, 40)
        job_id = self.add_job(total=total, progress=None)
        counts = [int(v) for v in ramp(self.rng, 0, total, low=2, high=max(3, total / 3))]
        steps: list[dict[str, Any]] = [*hold(self.rng.randint(0, 1)),
                                       {"status": "working", "progress": 0}]
        steps += [{"progress": count} for count in counts[:-1]]
        fate = self._spawned % 4
        if fate == 2:
            steps.append(self._completed(total, failed=self.rng.randint(1, 3)))
        elif fate == 3:
            steps = steps[: len(steps) // 2 + 1]
            steps.append({"status": "failed",
                          "message": "Bulk update aborted: ticket 4242 is locked by a merge"})
        elif fate == 0:
            steps = [*steps[:len(steps) // 2 + 1], {"_gone": True}]
        else:
            steps.append(self._completed(total, failed=0))
        self.plans.plan(job_id, steps)

    def _completed(self, total: int, *, failed: int) -> dict[str, Any]:
        results = []
        for n in range(total):
            bad = n < failed
            result: dict[str, Any] = {"id": 1000 + n, "index": n,
                                      "title": _TITLES[n % len(_TITLES)], "action": "update"}
            if bad:
                # Zendesk's failed item: `error` (a code) and `details` (what went wrong).
                result.update(error="TicketUpdateFailed", success=False, status="Failed",
                              details="Ticket is closed and cannot be updated")
            else:
                result.update(success=True, status="Updated")
            results.append(result)
        return {"status": "completed", "progress": total, "results": results,
                "message": f"Completed with {failed} failed item(s)" if failed
                else "Completed"}


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    kind, _, offset = text.partition(":")
    if kind != "offset":
        raise ValueError(cursor)
    return int(offset)
