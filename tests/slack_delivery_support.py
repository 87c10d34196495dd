"""A store's outbox delivered to the fake Slack by the real delivery workers and Slack sink."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import aiohttp

from bridge.config.loader import parse_config
from bridge.deliver import DeliveryWorkers
from bridge.metrics import Metrics
from bridge.simulators.slack import FakeSlack, SlackLimits
from bridge.sinks import build_sink
from bridge.sinks.base import Sink
from bridge.store.base import Store
from tests.config_support import sink


class SlackDelivery(NamedTuple):
    slack: FakeSlack
    workers: DeliveryWorkers
    sink: Sink


@contextlib.asynccontextmanager
async def delivering_to_fake_slack(
    store: Store, tmp_path: Path, *, limits: SlackLimits | None = None, **sink_fields: object
) -> AsyncIterator[SlackDelivery]:
    """A fake Slack (rate limits off unless `limits`) and the delivery workers of the Slack
    sink `ops-slack` (channel #ops, update mode, `sink_fields` added) sending `store`'s
    outbox to it; the test starts the workers, and they are stopped on the way out."""
    async with (FakeSlack(channels={"#ops": "C0OPS"}, limits=limits) as slack,
                aiohttp.ClientSession() as session):
        text = sink("ops-slack", "slack", token=slack.token, channel="#ops", mode="update",
                    base_url=slack.api_url, **sink_fields)
        config = parse_config(text, str(tmp_path / "rules.toml"), {}).sinks[0]
        notifier = build_sink(config, session, store)
        workers = DeliveryWorkers(store=store, sinks={"ops-slack": notifier},
                                  policies={"ops-slack": config.retry}, metrics=Metrics(),
                                  clock=lambda: datetime.now(UTC))
        try:
            yield SlackDelivery(slack, workers, notifier)
        finally:
            await workers.stop()
            await notifier.aclose()
