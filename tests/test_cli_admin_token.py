"""`bridge silence`, `bridge watch` and `bridge jtl` talk to a running bridge over its HTTP API,
whose write routes want the admin token: `$BRIDGE_ADMIN_TOKEN`, else the config's
`[bridge] admin_token`. Run with the config `bridge run` uses, the commands carry the same
token, so a bridge guarded only by its config's `admin_token` lets them in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import load_config
from bridge.simulators.esales import EsalesSimulator
from tests.cli_support import run_cli

TOKEN = "config-only-admin-token"
IMPORT_ID = "5537431447739019570"


def write_rules(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"
[[sources]]
name = "esales"
kind = "esales"
base_url = "{base_url}"
api_key = "k"
interval = "1h"
""", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_admin_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_ADMIN_TOKEN", raising=False)


async def test_silence_add_with_the_bridges_config_carries_its_admin_token(
        tmp_path: Path) -> None:
    async with EsalesSimulator(api_key="k") as esales:
        path = write_rules(tmp_path, esales.base_url)
        async with Bridge(load_config(path)) as bridge:
            url = bridge.http_url or ""
            code, out, err = await asyncio.to_thread(
                run_cli, "silence", "add", "source=esales", "--config", str(path), "--url", url)
            assert (code, err) == (0, "")
            assert out.startswith("added sil_")


async def test_watch_with_the_bridges_config_carries_its_admin_token(tmp_path: Path) -> None:
    async with EsalesSimulator(api_key="k") as esales:
        path = write_rules(tmp_path, esales.base_url)
        async with Bridge(load_config(path)) as bridge:
            url = bridge.http_url or ""
            code, out, err = await asyncio.to_thread(
                run_cli, "watch", "esales", IMPORT_ID, "--config", str(path), "--url", url)
            assert (code, err) == (0, "")
            assert out.startswith(f"now tracking esales/{IMPORT_ID}")


async def test_a_write_without_any_admin_token_is_still_refused(tmp_path: Path) -> None:
    async with EsalesSimulator(api_key="k") as esales:
        path = write_rules(tmp_path, esales.base_url)
        async with Bridge(load_config(path)) as bridge:
            url = bridge.http_url or ""
            code, _, err = await asyncio.to_thread(
                run_cli, "silence", "add", "source=esales", "--url", url)
            assert code == 1
            assert "HTTP 401" in err
