"""`bridge watch` asks a running bridge, over its HTTP API, to track a job id."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.simulators.esales import EsalesSimulator
from tests.cli_support import run_cli

IMPORT_ID = "5537431447739019570"


async def test_watch_makes_a_running_bridge_poll_the_new_job(tmp_path: Path) -> None:
    async with EsalesSimulator(api_key="k") as esales:
        esales.add_import(IMPORT_ID, status="IN_PROGRESS")
        text = f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
listen = "127.0.0.1:0"
[[sources]]
name = "esales"
kind = "esales"
base_url = "{esales.base_url}"
api_key = "k"
interval = "1h"
"""
        config = parse_config(text, str(tmp_path / "rules.toml"), {})
        async with Bridge(config) as bridge:
            url = bridge.http_url or ""
            code, out, _ = await asyncio.to_thread(
                run_cli, "watch", "esales", IMPORT_ID, "--url", url)
            assert code == 0
            assert out.startswith(f"now tracking esales/{IMPORT_ID}")
            for _ in range(200):
                if IMPORT_ID in bridge.pipeline.jobs("esales"):
                    break
                await asyncio.sleep(0.02)
            assert bridge.pipeline.jobs("esales")[IMPORT_ID].status.raw_state == "IN_PROGRESS"
            code, out, _ = await asyncio.to_thread(
                run_cli, "watch", "esales", IMPORT_ID, "--url", url)
            assert (code, out.split()[0]) == (0, "already")


def test_watch_without_a_running_bridge_says_how_to_start_one() -> None:
    code, _, err = run_cli("watch", "esales", IMPORT_ID, "--url", "http://127.0.0.1:9")
    assert code == 1
    assert "no bridge answering at http://127.0.0.1:9" in err
