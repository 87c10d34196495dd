"""`GET /v1/schema` and `GET /v1/schema/{type}`: the webhook event catalog over HTTP.

The same catalog and JSON Schemas as `bridge schema` (bridge.webhooks.catalog); open to
read, like the other read routes, since they describe bodies and hold no data.
"""

from __future__ import annotations

from aiohttp import web

from bridge.server.api import json_response
from bridge.webhooks import catalog


async def list_schemas(request: web.Request) -> web.Response:
    return json_response({"schema_version": catalog.SCHEMA_VERSION,
                          "dialect": catalog.DIALECT,
                          "types": catalog.listing()})


async def get_schema(request: web.Request) -> web.Response:
    try:
        schema = catalog.json_schema(request.match_info["type"])
    except catalog.UnknownEventType as exc:
        raise web.HTTPNotFound(text=f"{exc}; GET /v1/schema lists them") from None
    return json_response(schema)
