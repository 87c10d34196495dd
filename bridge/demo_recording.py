"""The demo's shipped recording: how `bridge/recordings/demo-jtl.jsonl` is made.

    python -m bridge.demo_recording bridge/recordings

A live bridge with the demo's config (its `jtl` source only, its sinks on a fake Slack and a
local webhook receiver) polls the JTL simulator's demo syncs while the source records
(bridge.record.RecordingSource). The simulator steps one tick per poll and the bridge's clock
one minute, so a seed always gives the same run. Next to the recording goes what the live
run queued, per sink, in `bridge replay`'s format (`demo-jtl.sent.txt`): replaying the
recording must print exactly that (tests/test_record_replay.py).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from bridge.model import Notification
from bridge.pipeline import PollOutcome
from bridge.record import RecordingSource, report
from bridge.sources.base import Source

START = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
DEMO_SLACK_TOKEN = "xoxb-demo-token"


async def live_recording(out: TextIO, state_dir: Path, *, polls: int = 40,
                         seed: int = 7) -> list[Notification]:
    """Record `polls` live polls of the demo's JTL syncs to `out`; what the bridge queued."""
    from bridge.app import Bridge
    from bridge.config import load_config
    from bridge.resources import demo_config
    from bridge.simulators.jtl import JtlSimulator
    from bridge.simulators.slack import FakeSlack
    from bridge.simulators.webhook_receiver import WebhookReceiver

    now = [START]
    sent: list[Notification] = []

    def collect(outcome: PollOutcome) -> None:
        if outcome.source == "jtl":
            sent.extend((*outcome.notifications, *outcome.silenced))

    async with (JtlSimulator(client_id="demo-client", client_secret="demo-client-secret",
                             seed=seed) as jtl,
                FakeSlack(token=DEMO_SLACK_TOKEN) as slack, WebhookReceiver() as receiver):
        jtl.plan_demo()
        env = {"DEMO_JTL_URL": jtl.base_url, "DEMO_JTL_TOKEN_URL": jtl.token_url,
               "DEMO_JTL_TENANT_ID": jtl.tenant_id, "DEMO_SLACK_URL": slack.api_url,
               "DEMO_SLACK_TOKEN": DEMO_SLACK_TOKEN, "DEMO_WEBHOOK_URL": receiver.url}
        with demo_config() as path:
            config = load_config(path, env=env)
        config = config.model_copy(update={
            # Polled only here, step by step: an hour is never reached by the scheduler.
            "sources": [s.model_copy(update={"interval": timedelta(hours=1)})
                        for s in config.sources if s.name == "jtl"],
            "bridge": config.bridge.model_copy(
                update={"state": f"sqlite:///{state_dir / 'state.db'}"})})

        def recording(source: Source) -> Source:
            return RecordingSource(source, out, lambda: now[0])

        async with Bridge(config, serve_http=False, clock=lambda: now[0],
                          observers=[collect], drain_timeout=1.0,
                          wrap_source=recording) as bridge:
            for _ in range(polls):
                jtl.tick()
                now[0] += timedelta(minutes=1)
                await bridge.pipeline.poll("jtl")
    return sent


def _main(folder: Path) -> None:
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as state, (folder / "demo-jtl.jsonl").open("w") as out:
        sent = asyncio.run(live_recording(out, Path(state)))
    (folder / "demo-jtl.sent.txt").write_text("\n".join(report(sent)) + "\n")


if __name__ == "__main__":
    _main(Path(sys.argv[1] if len(sys.argv) > 1 else "bridge/recordings"))
