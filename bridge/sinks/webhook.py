"""The outgoing webhook sink: a signed JSON POST per notification (contract section 6).

The body was rendered by an earlier stage (`payload["body"]`, a JSON string) and is sent
byte for byte as signed. `webhook-id` is the delivery id, the same on every retry, so a
receiver can de-duplicate. The URL may hold credentials and the secret is a key: neither
ever appears in an error message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import aiohttp

from bridge.config.schema import SinkBase, WebhookSink
from bridge.errors import PermanentDelivery
from bridge.model import Delivery
from bridge.secrets import redact, redact_url
from bridge.signing import decode_secret, signed_headers
from bridge.sinks.retry import Verdict, classify, classify_exception
from bridge.store.base import Store

log = logging.getLogger(__name__)

# Enough of a failed answer to tell what the receiver said, short enough for a log line.
_BODY_SNIPPET = 200


class WebhookNotifier:
    """Posts notifications to one webhook URL on the shared session."""

    def __init__(
        self,
        config: WebhookSink,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.config: SinkBase = config
        self._config = config
        self._session = session
        self._clock = clock
        self._url = config.url.get_secret_value()
        self._where = f"POST {redact_url(self._url)}"
        self._secrets: tuple[str, ...] = (self._url,)
        self._key: bytes | None = None
        if config.secret is not None:
            secret = config.secret.get_secret_value()
            self._secrets += (secret,)
            self._key = decode_secret(secret)  # `WebhookSink` checked that it decodes
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())

    @property
    def name(self) -> str:
        return self._config.name

    async def send(self, delivery: Delivery) -> None:
        body = _body(delivery)
        headers = {
            **self._config.headers,
            "content-type": "application/json",
            **signed_headers(self._key, delivery.id, int(self._clock()), body),
        }
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                outcome = classify(response.status, response.headers)
                snippet = "" if outcome.verdict is Verdict.OK else await _snippet(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise classify_exception(exc, secrets=self._secrets).error(self._where) from None
        if outcome.verdict is Verdict.OK:
            log.debug("webhook %s accepted %s", self.name, delivery.id)
            return
        if snippet:
            outcome = replace(outcome, reason=f"{outcome.reason}: {redact(snippet, self._secrets)}")
        raise outcome.error(self._where)

    async def aclose(self) -> None:
        """Nothing to stop: requests run on the caller's task and the shared session."""


def _body(delivery: Delivery) -> bytes:
    body = delivery.notification.payload.get("body")
    if isinstance(body, bytes):
        return body
    if not isinstance(body, str):
        raise PermanentDelivery(
            f"notification {delivery.id} for webhook sink {delivery.notification.sink!r} has no "
            "rendered 'body'; check the rule's template for this sink"
        )
    return body.encode()


async def _snippet(response: aiohttp.ClientResponse) -> str:
    try:
        text = await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError):
        return ""
    text = " ".join(text.split())
    return text[:_BODY_SNIPPET] + ("…" if len(text) > _BODY_SNIPPET else "")


def build(config: WebhookSink, session: aiohttp.ClientSession, store: Store) -> WebhookNotifier:
    del store  # webhooks remember nothing between notifications
    return WebhookNotifier(config, session)
