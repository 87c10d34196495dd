"""Signed pushes to `POST /v1/events/{source}`, as a Standard Webhooks sender makes them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

# The secret the tests' push sources verify pushes with.
PUSH_SECRET = "whsec_" + base64.b64encode(b"bridge push key for e2e tests!!").decode()


async def signed_push(http: aiohttp.ClientSession, url: str, source: str, payload: object,
                      msg_id: str, *, at: datetime | None = None,
                      secret: str = PUSH_SECRET) -> None:
    """Push `payload` signed at `at` (default now: the server's clock may be injected) and
    require the 202 that says it was accepted."""
    body = json.dumps(payload)
    when = at or datetime.now(UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
               "webhook-signature": Webhook(secret).sign(msg_id, when, body),
               "Content-Type": "application/json"}
    async with http.post(f"{url}/v1/events/{source}", data=body, headers=headers) as response:
        assert response.status == 202, await response.text()
