"""`bridge silence`, `bridge watch` and `bridge jtl` read the config (without `--url`) only for
the running bridge's `[bridge] listen` and `admin_token`: the bridge they call holds the
sources' and sinks' credentials, so an operator's shell without `$SLACK_BOT_TOKEN` or
`$JTL_TOKEN` can still use them. `bridge check` and `bridge run` still name every unset one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import load_config
from bridge.simulators.jtl import JtlSimulator
from tests.cli_support import run_cli
from tests.config_support import slack_sink, source, table
from tests.test_sources_jtl import TENANT, TOKEN

ADMIN = "admin-token-in-the-config"
SLACK_TOKEN = "xoxb-only-the-bridge-has-this"
SYNC = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
# What only the running bridge's environment holds.
BRIDGE_ENV = {"SLACK_BOT_TOKEN": SLACK_TOKEN, "JTL_TOKEN": TOKEN}


def rules(tmp_path: Path, listen: str, jtl_url: str = "http://127.0.0.1:9") -> str:
    return (table("bridge", state=f"sqlite:///{tmp_path}/state.db", listen=listen,
                  admin_token=ADMIN)
            + source("erp", "jtl", base_url=jtl_url, tenant_id=TENANT,
                     interval="1h", auth={"type": "bearer", "token": "${JTL_TOKEN}"})
            + slack_sink("http://127.0.0.1:9/api/", token="${SLACK_BOT_TOKEN}"))


@pytest.fixture(autouse=True)
def operator_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell the commands run in: the config, none of its secrets."""
    for name in (*BRIDGE_ENV, "BRIDGE_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@asynccontextmanager
async def bridge_and_config(tmp_path: Path) -> AsyncIterator[tuple[JtlSimulator, Path]]:
    """A running bridge given its secrets, and the same config for the commands, naming the
    address the bridge listens on."""
    async with JtlSimulator(tenant_id=TENANT, token=TOKEN) as sim:
        served = tmp_path / "served.toml"
        served.write_text(rules(tmp_path, "127.0.0.1:0", sim.base_url), encoding="utf-8")
        async with Bridge(load_config(served, env=BRIDGE_ENV)) as bridge:
            listen = (bridge.http_url or "").removeprefix("http://").rstrip("/")
            path = tmp_path / "rules.toml"
            path.write_text(rules(tmp_path, listen, sim.base_url), encoding="utf-8")
            yield sim, path


async def test_silence_add_needs_no_source_or_sink_secret(tmp_path: Path) -> None:
    async with bridge_and_config(tmp_path) as (_, path):
        code, out, err = await asyncio.to_thread(
            run_cli, "silence", "add", "source=erp", "--config", str(path))
    assert (code, err) == (0, "")
    assert out.startswith("added sil_")


async def test_watch_needs_no_source_or_sink_secret(tmp_path: Path) -> None:
    async with bridge_and_config(tmp_path) as (_, path):
        code, out, err = await asyncio.to_thread(
            run_cli, "watch", "erp", SYNC, "--config", str(path))
    assert (code, err) == (0, "")
    assert out.startswith(f"now tracking erp/{SYNC}")


async def test_jtl_restart_needs_no_source_or_sink_secret(tmp_path: Path) -> None:
    async with bridge_and_config(tmp_path) as (sim, path):
        sim.add_sync(SYNC)
        code, out, err = await asyncio.to_thread(
            run_cli, "jtl", "restart", "erp", SYNC, "--config", str(path))
    assert (code, err) == (0, "")
    assert out.startswith(f"restart of {SYNC} accepted")
    assert sim.control_log == [("POST", f"/erp/v2/worker/syncs/{SYNC}/restart", None)]


def test_an_unset_variable_in_the_bridge_table_still_stops_them(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    text = rules(tmp_path, "127.0.0.1:9").replace(ADMIN, "${ADMIN_TOKEN_UNSET}")
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index('admin_token = "${ADMIN_TOKEN_UNSET}"') + 1
    code, _, err = run_cli("silence", "list", "--config", str(path))
    assert code == 1
    assert err.splitlines()[0] == (
        f"{path}:{line}: bridge.admin_token: environment variable ADMIN_TOKEN_UNSET is not set"
        " (write ${ADMIN_TOKEN_UNSET:-default} for a default)")


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_still_name_every_unset_secret(tmp_path: Path, command: str) -> None:
    path = tmp_path / "rules.toml"
    text = rules(tmp_path, "127.0.0.1:0")
    path.write_text(text, encoding="utf-8")
    jtl, slack = (text.splitlines().index(f'token = "${{{name}}}"') + 1
                  for name in ("JTL_TOKEN", "SLACK_BOT_TOKEN"))
    code, _, err = run_cli(command, "--config", str(path))
    assert code == 1
    assert err.splitlines() == [
        f"{path}:{jtl}: sources[0].auth.token: "
        "environment variable JTL_TOKEN is not set (write ${JTL_TOKEN:-default} for a default)",
        f"{path}:{slack}: sinks[0].token: "
        "environment variable SLACK_BOT_TOKEN is not set (write ${SLACK_BOT_TOKEN:-default} "
        "for a default)",
        "2 problem(s) found",
    ]
    assert not (tmp_path / "state.db").exists()
