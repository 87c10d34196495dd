"""A newcomer's first real alert, as the README tells it, outside the checkout: `bridge init
--source zendesk --sink slack` in an empty folder, the variables pointed at the Zendesk
simulator and the fake Slack, then `check --online`, `notify-test` and `run` each deliver
(or check) over real sockets, run as the `bridge` command would be."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bridge.simulators.slack import FakeSlack
from bridge.simulators.zendesk import ZendeskSimulator

TOKEN = "xoxb-newcomer-0123456789"


async def bridge(folder: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, cwd=folder, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return int(process.returncode or 0), out.decode()


@pytest.mark.timeout(120)
async def test_init_then_check_online_notify_test_and_run_reach_the_fake_slack(
        tmp_path: Path) -> None:
    folder = tmp_path / "first-alert"
    folder.mkdir()
    async with ZendeskSimulator(email="ops@acme.com", api_token="zd-token-123456") as zendesk, \
            FakeSlack(token=TOKEN, channels={"#ops-alerts": "C0OPS"}, limits=None) as slack:
        running = zendesk.add_job(status="working", total=10, progress=4)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ZENDESK_URL": zendesk.base_url,
               "ZENDESK_EMAIL": "ops@acme.com", "ZENDESK_API_TOKEN": "zd-token-123456",
               "SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": slack.api_url,
               "BRIDGE_LISTEN": "127.0.0.1:0"}
        env.pop("BRIDGE_CONFIG", None)
        code, out = await bridge(folder, env, "init", "--source", "zendesk", "--sink", "slack")
        assert code == 0, out
        # Polled every second instead of 30 for the test; nothing else is edited.
        config = folder / "rules.toml"
        config.write_text(config.read_text().replace('interval = "30s"', 'interval = "1s"'))

        code, out = await bridge(folder, env, "check", "--online")
        assert code == 0, out
        assert "ok    source zendesk (zendesk): sees 1 job at " in out
        assert "ok    sink ops-slack (slack) auth.test: token of @bridge" in out
        assert "ok    sink ops-slack (slack) channel #ops-alerts: @bridge is a member" in out

        code, out = await bridge(folder, env, "notify-test", "ops-slack")
        assert code == 0, out
        assert len(slack.roots("#ops-alerts")) == 1

        polled = zendesk.request_count()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", cwd=folder, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            # `run`'s first poll has seen the job working before it fails.
            await _wait_polled(zendesk, at_least=polled + 1)
            zendesk.set_job(running, status="failed", message="Printer on fire")
            await slack.wait_for(lambda: len(slack.roots("#ops-alerts")) == 2, within=30)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
    alert = slack.roots("#ops-alerts")[-1]
    assert alert.text is not None and running in alert.text and "failed" in alert.text
    assert "Printer on fire" in alert.text
    assert (folder / "bridge-state.db").exists()  # state next to the config, not in the cwd


async def _wait_polled(zendesk: ZendeskSimulator, at_least: int) -> None:
    # The simulator has no event to wait on; its request count is what `run` did.
    async with asyncio.timeout(30):
        while zendesk.request_count() < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
