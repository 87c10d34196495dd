"""Acting on JTL worker syncs: their names, Configure Sync (seed 001) and run control.

- `GET /v2/workers` lists the worker's syncs as `WorkerSyncItem`s; the poller reads it to
  learn each sync's `syncName` and `salesChannelName` (`job.name`, "Amazon DE: orders").
- `POST /v2/workers/{syncId}` (seed 001, "Configure Sync") sets `interval` (an ISO 8601
  duration, `PT15M`) and configuration values (`configs: [{identifier, value}]`) and answers
  the changed `WorkerSyncItem`.
- Run control: `POST /v2/worker/syncs/{syncId}/restart` (also `start`, `stop`). JTL
  documents `PUT /v2/workers/{syncId}` with `{"action": 0|1|2}` as well, but v2.3 marks it
  deprecated in favour of these routes, which also answer what was accepted
  (`{"actionId", "requestedAt"}`) where the old one answers nothing: we use the new ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.sources.client import SourceClient
from bridge.sources.shapes import expect_list, expect_object

RUN_ACTIONS = ("start", "stop", "restart")
# ISO 8601 durations, as JTL's `string<duration>`: PT15M, PT1H30M, P1D.
DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


class ControlError(ValueError):
    """A control request that cannot be sent as asked; the message says what to give."""


@dataclass(frozen=True, slots=True)
class ConfigValue:
    identifier: str
    value: str


def configure_body(interval: str | None, configs: Sequence[ConfigValue]) -> dict[str, Any]:
    """Seed 001's request body (`CreateWorkerSyncConfiguration`); ControlError if empty or
    the interval is not an ISO 8601 duration."""
    if interval is None and not configs:
        raise ControlError("give an interval (e.g. PT15M) or at least one CONFIG_ID=VALUE")
    body: dict[str, Any] = {}
    if interval is not None:
        if not DURATION.match(interval):
            raise ControlError(f"interval {interval!r} is not an ISO 8601 duration "
                               "(e.g. PT15M, PT1H, P1D)")
        body["interval"] = interval
    if configs:
        body["configs"] = [{"identifier": c.identifier, "value": c.value} for c in configs]
    return body


def parse_sets(pairs: Sequence[str]) -> list[ConfigValue]:
    """`CONFIG_ID=VALUE` arguments; ControlError naming a malformed one."""
    out: list[ConfigValue] = []
    for pair in pairs:
        identifier, sep, value = pair.partition("=")
        if not sep or not identifier.strip():
            raise ControlError(f"--set {pair!r}: expected CONFIG_ID=VALUE")
        out.append(ConfigValue(identifier.strip(), value))
    return out


def display_name(item: Mapping[str, Any]) -> str | None:
    """"Amazon DE: orders" from a WorkerSyncItem; None when it names neither."""
    channel = item.get("salesChannelName")
    sync = item.get("syncName")
    parts = [p for p in (channel, sync) if isinstance(p, str) and p.strip()]
    return ": ".join(parts) or None


class SyncControl:
    """One JTL source's sync controls, over that source's client (its auth and headers)."""

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def list_items(self) -> list[dict[str, Any]]:
        response = await self.client.get(self.client.url("/v2/workers"))
        items = expect_list(response.body, "workers response")
        return [expect_object(item, f"[{i}]") for i, item in enumerate(items)]

    async def configure(self, sync_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.client.request(
            "POST", self.client.url(f"/v2/workers/{sync_id}"), json_body=dict(body),
            accept=_REFUSALS)
        _refused(response.status, response.body, sync_id)
        return expect_object(response.body, "Configure Sync response")

    async def run(self, sync_id: str, action: str) -> dict[str, Any]:
        if action not in RUN_ACTIONS:
            raise ControlError(f"unknown run action {action!r}: one of {', '.join(RUN_ACTIONS)}")
        response = await self.client.request(
            "POST", self.client.url(f"/v2/worker/syncs/{sync_id}/{action}"), accept=_REFUSALS)
        _refused(response.status, response.body, sync_id)
        if response.body is None:
            return {}
        return expect_object(response.body, f"{action} response")


# What JTL answers to a request it will not do (a problem+json body says why): the user's
# mistake, told as JTL said it, not a source outage.
_REFUSALS = frozenset({400, 404, 409, 422})


def _refused(status: int, body: Any, sync_id: str) -> None:
    if status < 400:
        return
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    raise ControlError(f"JTL refused (HTTP {status}) for sync {sync_id}: "
                       f"{detail or 'no reason given'}")


