"""A group survives `kill -9`: `python -m bridge run` as a child process, killed after the
failures joined their group and before its digest was due; the restarted bridge sends the
digest once, with every event. Real time (group_wait of seconds): marked slow."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from tests.crash_support import (
    EMAIL,
    SECRET,
    TOKEN,
    BridgeProcess,
    eventually,
    opened,
    state_url,
    webhook_sink,
    write_config,
    zendesk_source,
)

pytestmark = pytest.mark.slow
JOBS = 12


async def test_kill_9_mid_group_loses_no_event_and_sends_one_digest(tmp_path: Path) -> None:
    async with ZendeskSimulator(email=EMAIL, api_token=TOKEN) as zendesk, WebhookReceiver(
            secret=SECRET) as receiver:
        ids = [zendesk.add_job(f"job-{i:02d}", status="working") for i in range(JOBS)]
        config = write_config(tmp_path, zendesk_source(zendesk, interval="200ms"),
                              webhook_sink(receiver.url), """
[[rules]]
name = "failures"
on = "transition"
to = ["failed"]
template = "transition.slack.j2"
notify = ["pager"]
group_by = ["source"]
group_wait = "4s"
group_interval = "1h"
""")
        # Debug: each routed event's line is logged at debug (bridge.stages.route).
        first = await BridgeProcess(config, log_level="debug").start()
        second = BridgeProcess(config)
        try:
            await first.wait_for_log("bridge running")
            await first.wait_for_log("job-00: running")  # all seen running, in one poll
            for job_id in ids:
                zendesk.set_job(job_id, status="failed")

            async def all_joined() -> bool:
                async with opened(state_url(config)) as store:
                    groups = await store.open_groups()
                return len(groups) == 1 and len(groups[0].events) == JOBS

            await eventually(all_joined, within=10, what="every failure in the group")
            first.kill()
            assert await first.wait() == -signal.SIGKILL
            assert receiver.requests == []  # killed before the group was due
            await second.start()
            await receiver.wait_for(lambda: len(receiver.requests) >= 1, within=20)
            await asyncio.sleep(1.0)  # a second digest would come now; none may
            second.terminate()
            assert await second.wait() == 0, second.log()
        finally:
            await first.aclose()
            await second.aclose()
    [request] = receiver.requests
    data = json.loads(request.body)["data"]
    assert request.verified and data["flush"] == 1 and data["counts"] == {"failed": JOBS}
    assert sorted(e["job"]["id"] for e in data["events"]) == ids
