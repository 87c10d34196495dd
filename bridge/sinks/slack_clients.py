"""The Slack sink's clients and the small readings of its answers: which client a sink's
config asks for (Web API or incoming webhook), its post and edit budgets, and what a failed
call's answer says. `bridge.sinks.slack` sends with them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bridge.config.schema import SlackSink
from bridge.errors import RetryableDelivery
from bridge.sinks.slack_budget import Budget


@dataclass(slots=True, kw_only=True)
class Clients:
    web: AsyncWebClient | None = None
    webhook: AsyncWebhookClient | None = None
    secrets: tuple[str, ...] = field(default=())



def clients(config: SlackSink, session: aiohttp.ClientSession) -> Clients:
    # `SlackSink` validated the combination (token + channel, or an incoming webhook that
    # only posts): nothing to check again here.
    timeout = max(1, int(config.timeout.total_seconds()))
    if config.token is not None:
        token = config.token.get_secret_value()
        web = AsyncWebClient(token=token, base_url=config.base_url, session=session,
                             timeout=timeout, retry_handlers=[])
        return Clients(web=web, secrets=(token,))
    assert config.webhook_url is not None
    url = config.webhook_url.get_secret_value()
    webhook = AsyncWebhookClient(url, session=session, timeout=timeout, retry_handlers=[])
    return Clients(webhook=webhook, secrets=(url,))


def unreadable(where: str, exc: Exception) -> RetryableDelivery:
    # Not the exception's text: it may quote the body, and the body may quote the token.
    return RetryableDelivery(f"{where}: the answer could not be read ({type(exc).__name__}); "
                             "is base_url a Slack-compatible API?")



def details(response: Any) -> tuple[int, Mapping[str, str], str | None]:
    """Status, headers and Slack `error` of a failed call (an AsyncSlackResponse, or the raw
    aiohttp response when the body was not JSON)."""
    status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
    headers = getattr(response, "headers", None) or {}
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return int(status), headers, str(error) if error is not None else None


def budgets(config: SlackSink) -> tuple[Budget, Budget]:
    """The sink's (post, update) budgets: `rate_limits`, or the older fixed `min_interval`
    spacing for both when it is given."""
    if config.min_interval is not None:
        seconds = config.min_interval.total_seconds()
        spaced = Budget(per_second=1 / seconds if seconds > 0 else math.inf)
        return spaced, spaced
    limits = config.rate_limits
    return (Budget(per_second=limits.post_per_second, burst=limits.post_burst),
            Budget(per_second=limits.update_per_minute / 60, burst=limits.update_burst))
