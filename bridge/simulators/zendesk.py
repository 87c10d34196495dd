"""A fake Zendesk job-statuses API: `GET /api/v2/job_statuses.json` (cursor pages) and
`GET /api/v2/job_statuses/{id}.json`, with basic `email/token` or bearer auth.

Like the real API it lists only the newest `list_limit` jobs, answers an expired (deleted)
job with 404 `RecordNotFound`, counts `progress` in tasks out of `total`, and reports
failed items of a `completed` job in `results[]`. The demo lifecycle queues bulk jobs that
work through their tasks; one completes with failed items, one fails, one expires mid-way.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
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
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.email = email
        self.api_token = api_token
        self.bearer_token = bearer_token
        self.page_size = page_size
        self.list_limit = list_limit
        self.jobs: dict[str, dict[str, Any]] = {}
        self._spawned = 0

    # --- test controls ----------------------------------------------------------------

    def add_job(self, job_id: str | None = None, *, status: str = "queued",
                total: int | None = None, progress: int | None = None,
                message: str | None = None, results: list[dict[str, Any]] | None = None) -> str:
        job_id = job_id or f"{self.rng.getrandbits(128):032x}"
        self.jobs[job_id] = {
            "id": job_id, "url": self._url(job_id), "total": total, "progress": progress,
            "status": status, "message": message, "results": results,
        }
        return job_id

    def set_job(self, job_id: str, **changes: Any) -> None:
        """Change raw fields (`status`, `progress`, `total`, `message`, `results`)."""
        self.jobs[job_id].update(changes)

    def expire(self, job_id: str) -> None:
        """The job status expires: from now on it answers 404 RecordNotFound."""
        self.jobs.pop(job_id, None)
        self.plans.drop(job_id)

    # --- the API ----------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [
            web.get("/api/v2/job_statuses.json", self._list),
            web.get("/api/v2/job_statuses/{id}.json", self._show),
        ]

    def authorize(self, request: web.Request) -> web.Response | None:
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
        listed = list(reversed(self.jobs.values()))[: self.list_limit]
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
        })

    async def _show(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return json_response(_NOT_FOUND, status=404)
        return json_response({"job_status": job})

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
                self.jobs[job_id].update(step)

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
            results.append({
                "id": 1000 + n, "title": _TITLES[n % len(_TITLES)], "action": "update",
                "success": not bad, "status": "Failed" if bad else "Updated",
                "errors": "Ticket is closed and cannot be updated" if bad else "",
            })
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
