"""A fake Voyado eSales admin API: `GET /api/admin/v3/import/status?id=` with an `Api-Key`.

Import ids are 19-digit numbers sent as strings, or as bare JSON numbers with
`numeric_ids=True` (to prove a client keeps them exact). An unknown id answers 200 with
status `NOT_FOUND`; `cluster_found = False` answers every request 404, as a wrong cluster
id in the host name does. The demo imports go WAITING -> IN_PROGRESS -> SUCCESS/FAILURE
(one is BLOCKED for a while, one is ABORTED).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bridge.simulators.base import Simulator, hold, json_response

_FAILURE = "Row 1289: unknown attribute 'colour' in product feed (did you mean 'color'?)"


class EsalesSimulator(Simulator):
    """eSales import statuses, keyed by the import id as text."""

    def __init__(self, *, api_key: str = "esales-api-key", numeric_ids: bool = False,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.api_key = api_key
        self.numeric_ids = numeric_ids
        self.cluster_found = True
        self.imports: dict[str, dict[str, Any]] = {}

    # --- test controls ----------------------------------------------------------------

    def add_import(self, import_id: str | None = None, *, status: str = "WAITING",
                   reason: str | None = None) -> str:
        import_id = import_id or str(self.rng.randrange(10**18, 10**19))
        self.imports[import_id] = {"status": status, "reason": reason}
        return import_id

    def set_import(self, import_id: str, *, status: str, reason: str | None = None) -> None:
        self.imports[import_id] = {"status": status, "reason": reason}

    def remove_import(self, import_id: str) -> None:
        """Forget the import: it answers NOT_FOUND from now on."""
        self.imports.pop(import_id, None)
        self.plans.drop(import_id)

    # --- the API ----------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get("/api/admin/v3/import/status", self._status)]

    def authorize(self, request: web.Request) -> web.Response | None:
        if not self.cluster_found:
            return json_response({"message": "Cluster not found"}, status=404)
        if request.headers.get("Api-Key") != self.api_key:
            return self.unauthorized()
        return None

    def unauthorized(self) -> web.Response:
        return json_response({"message": "Invalid or missing Api-Key"}, status=401)

    def drifted_body(self) -> Any:
        return {"importId": "5537431447739019570", "state": {"name": "IN_PROGRESS"}}

    async def _status(self, request: web.Request) -> web.Response:
        import_id = request.query.get("id", "")
        if not import_id:
            return json_response({"message": "Missing required query parameter 'id'"},
                                 status=400)
        found = self.imports.get(import_id, {"status": "NOT_FOUND", "reason": None})
        body: dict[str, Any] = {"id": import_id, **found}
        if self.numeric_ids and import_id.isdigit():
            # json.dumps writes a Python int with every digit, as a JSON number.
            body["id"] = int(import_id)
        if body["reason"] is None:
            del body["reason"]
        return json_response(body)

    # --- demo lifecycle ---------------------------------------------------------------

    def plan_demo(self, count: int = 5) -> list[str]:
        """Create the demo imports (their ids go into the demo config) with their fates:
        most succeed, one fails with a reason, one is blocked first, one is aborted."""
        ids = []
        for n in range(count):
            import_id = self.add_import()
            ids.append(import_id)
            steps: list[dict[str, Any]] = [*hold(2 + 3 * n + self.rng.randint(0, 2))]
            if n == 1:
                steps += [{"status": "BLOCKED",
                           "reason": "Waiting for import 4711 on the same market to finish"},
                          *hold(3)]
            steps += [{"status": "IN_PROGRESS", "reason": None},
                      *hold(self.rng.randint(2, 5))]
            steps.append(_FATES[n % len(_FATES)])
            self.plans.plan(import_id, steps)
        return ids

    def tick(self) -> None:
        super().tick()
        for import_id, step in self.plans.advance():
            if import_id in self.imports:
                self.imports[import_id].update(step)


_FATES: tuple[dict[str, Any], ...] = (
    {"status": "SUCCESS", "reason": None},
    {"status": "SUCCESS", "reason": None},
    {"status": "FAILURE", "reason": _FAILURE},
    {"status": "SUCCESS", "reason": None},
    {"status": "ABORTED", "reason": "Aborted by user admin@example.com"},
)
