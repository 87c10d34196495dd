"""The schema check of every webhook body the test receiver gets (tests/conftest.py).

A body that claims to be bridge's default body (a JSON object whose `type` starts with
`job.`, or is another type of the catalog, `silence.reminder`) must validate, with the
independent `jsonschema` package, against the JSON Schema
the catalog publishes for that type. Bodies of a sink's `body` template (PagerDuty's has
no `type`) and hand-made test payloads are not the default body and are skipped.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from bridge.simulators.webhook_receiver import ReceivedRequest
from bridge.webhooks import catalog


@cache
def validator(type_name: str) -> Draft202012Validator:
    schema = catalog.json_schema(type_name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def is_default_body(body: Any) -> bool:
    kind = body.get("type") if isinstance(body, dict) else None
    return isinstance(kind, str) and (kind.startswith("job.") or kind in catalog.CATALOG)


def problems_of(body: Any) -> list[str]:
    """Why `body` does not match its type's published schema; empty when it does."""
    kind = body["type"]
    if kind not in catalog.CATALOG:
        return [f"type {kind!r} is not in the webhook catalog"]
    return [f"{kind} {'/'.join(str(p) for p in error.absolute_path) or '(body)'}: "
            f"{error.message}" for error in validator(kind).iter_errors(body)]


class SchemaCheck:
    """A `WebhookReceiver` check: validates each default body it records."""

    def __init__(self) -> None:
        self.validated: list[str] = []
        self.problems: list[str] = []

    def __call__(self, request: ReceivedRequest) -> None:
        try:
            body = json.loads(request.body)
        except ValueError:
            return
        if not is_default_body(body):
            return
        found = problems_of(body)
        if found:
            self.problems.extend(found)
            raise AssertionError("; ".join(found))
        self.validated.append(body["type"])
