"""Replay runs the pipeline's very stages: the same polls give the same notifications.

A live `Bridge` polls the Zendesk simulator over a real socket; at each step the test polls
the same simulator with a second, real Zendesk source (same config, same ids) and records
the answer with the clock. Replaying those recordings through `bridge.stages.replay`
(no store, no sinks) must give exactly the notifications the live bridge queued: same
event ids (reminders included), rules, sinks and payloads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bridge.app import Bridge
from bridge.model import Notification
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.sources import build_source
from bridge.stages import stages_for
from bridge.stages.replay import Recorded, notifications, replay
from tests.test_pipeline import Recorder, make_config, receiver, zendesk

__all__ = ["receiver", "zendesk"]  # the fixtures, shared with test_pipeline


def _key(n: Notification) -> tuple[str, str, str, str]:
    return (n.event_id, n.rule, n.sink, str(sorted(n.payload.items())))


async def test_replaying_recorded_polls_gives_what_the_live_bridge_queued(
    tmp_path: Path, zendesk: ZendeskSimulator, receiver: WebhookReceiver
) -> None:
    now = [datetime(2026, 11, 23, 10, 0, tzinfo=UTC)]
    config = make_config(tmp_path, zendesk, receiver.url)
    rule = config.rules[0].model_copy(update={"from_": ["running"], "repeat": timedelta(hours=1)})
    config = config.model_copy(update={"rules": [rule]})
    zendesk.add_job("job-a", status="working")
    zendesk.add_job("job-b", status="working")
    recorder = Recorder()
    recorded: list[Recorded] = []
    steps = [
        (timedelta(0), {}),
        (timedelta(minutes=1), {"job-a": "failed"}),
        (timedelta(minutes=31), {"job-b": "killed"}),
        (timedelta(minutes=62), {}),  # job-a's reminder is due
        (timedelta(minutes=93), {}),  # job-b's
    ]
    bridge = Bridge(config, serve_http=False, observers=[recorder], clock=lambda: now[0])
    async with bridge, aiohttp.ClientSession() as session:
        twin = build_source(config.sources[0], session)
        start = now[0]
        for offset, changes in steps:
            for job_id, state in changes.items():
                zendesk.set_job(job_id, status=state, message="Printer on fire")
            now[0] = start + offset
            ids = bridge.pipeline.ids_to_poll("zendesk")
            await bridge.pipeline.poll("zendesk")
            recorded.append(Recorded(source="zendesk", at=now[0], poll=await twin.poll(ids)))
        await bridge.pipeline.wait_idle()
    live = [n for o in recorder.outcomes for n in o.notifications]
    batches = await replay(stages_for(config), recorded)
    replayed = notifications(batches)
    assert [_key(n) for n in replayed] == [_key(n) for n in live]
    # Two failures and one reminder each: the replay is not trivially empty.
    reminders = [e for b in batches for e in b.events if e.repeat_of]
    assert len(replayed) == 4 and len(reminders) == 2
