"""Coalescing in the outbox, end to end: a real `Bridge` (SQLite or PostgreSQL) polling a
Zendesk simulator into a fake Slack channel in `update` mode, over real sockets. The start
posts of a burst of jobs wait in the outbox behind the channel; the jobs succeed meanwhile;
each job whose start post was still waiting gets one chat.postMessage showing that it
succeeded, never a post followed by an edit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import load_config
from bridge.model import DeliveryStatus
from bridge.simulators.slack import FakeCall, FakeSlack
from bridge.simulators.zendesk import ZendeskSimulator
from tests.crash_support import EMAIL, TOKEN, write_config, zendesk_source
from tests.store_fixtures import BACKENDS, store_url
from tests.test_groups_e2e import Clock
from tests.test_slack_urgency import until

CHANNEL = "C0OPS"
JOBS = 16


@pytest.fixture
async def zendesk() -> AsyncIterator[ZendeskSimulator]:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as sim:
        yield sim


def config(tmp_path: Path, state: str, zendesk: ZendeskSimulator, slack: FakeSlack) -> Path:
    path = write_config(tmp_path, zendesk_source(zendesk, interval="1h"), f"""
[[sinks]]
name = "ops-slack"
kind = "slack"
token = "{slack.token}"
channel = "#ops"
mode = "update"
base_url = "{slack.api_url}"
rate_limits = {{ post_per_second = 20, post_burst = 1 }}

[[rules]]
name = "started"
on = "appeared"
template = "appeared.slack.j2"
notify = ["ops-slack"]

[[rules]]
name = "finished"
on = "transition"
to = ["succeeded"]
template = "transition.slack.j2"
notify = ["ops-slack"]
""")
    text = path.read_text().replace(f'state = "sqlite:///{tmp_path}/state.db"',
                                    f'state = "{state}"')
    path.write_text(text)
    return path


def naming(calls: list[FakeCall], job: str) -> list[str]:
    return [str(c.body["text"]) for c in calls if f"|{job}>" in str(c.body["text"])]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_start_posts_waiting_in_the_outbox_go_out_once_as_the_jobs_final_state(
        backend: str, tmp_path: Path, zendesk: ZendeskSimulator) -> None:
    ids = [zendesk.add_job(f"job-{i:02d}", status="working") for i in range(JOBS)]
    async with (store_url(backend, tmp_path) as state,
                FakeSlack(channels={"#ops": CHANNEL}, limits=None) as slack):
        slack.hold()  # the first batch's calls wait in Slack; the rest wait in the outbox
        polled, clock = asyncio.Event(), Clock()
        bridge = Bridge(load_config(config(tmp_path, state, zendesk, slack)), serve_http=False,
                        drain_timeout=2.0, clock=clock,
                        observers=[lambda outcome: polled.set()])
        await bridge.__aenter__()
        try:
            async with asyncio.timeout(10):
                await polled.wait()  # the start-up poll: every job appeared
            await until(lambda: slack.held > 0, "the first start post")
            for job in ids:
                zendesk.set_job(job, status="completed")
            clock.advance(1)
            outcome = await bridge.pipeline.poll("zendesk")
            assert len(outcome.notifications) == JOBS
            waited = {d.notification.job_id
                      for d in await bridge.store.list_outbox(DeliveryStatus.SUPERSEDED)}
            assert len(waited) >= JOBS // 2
            slack.release()

            def succeeded() -> int:
                return sum(1 for m in slack.roots(CHANNEL) if "succeeded" in str(m.text))

            await until(lambda: succeeded() == JOBS, "every job's message saying succeeded",
                        within=30)
        finally:
            await bridge.__aexit__(None, None, None)
    posts, edits = slack.calls_to("chat.postMessage"), slack.calls_to("chat.update")
    for job in waited:
        assert len(naming(posts, job)) == 1 and "succeeded" in naming(posts, job)[0]
        assert naming(edits, job) == []
    assert len(slack.roots(CHANNEL)) == JOBS
