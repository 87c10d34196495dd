"""`bridge run`'s event loop (bridge.loop): uvloop by default, asyncio's own on request."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from bridge import loop
from bridge.cli import build_parser
from bridge.cli import main as cli_main


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    # `loop.run` tunes the collector for a server's life; give the test process its own back.
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_bridge_run_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.ENV, raising=False)
    args = build_parser().parse_args(["run"])
    assert loop.run(_loop_module(), loop.choose(args.loop)).startswith("uvloop")


def test_loop_asyncio_runs_on_the_standard_loop() -> None:
    args = build_parser().parse_args(["run", "--loop", "asyncio"])
    assert loop.run(_loop_module(), loop.choose(args.loop)).startswith("asyncio")


def test_bridge_loop_env_asyncio_runs_on_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(loop.ENV, "asyncio")
    args = build_parser().parse_args(["run"])
    assert loop.run(_loop_module(), loop.choose(args.loop)).startswith("asyncio")


def test_a_bridge_loop_env_naming_no_loop_stops_bridge_run_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(loop.ENV, "uvlop")
    assert cli_main(["run", "--config", "/nonexistent/rules.toml"]) == 1
    assert capsys.readouterr().err.strip() == (
        "bridge run: $BRIDGE_LOOP='uvlop' is not an event loop bridge runs on: "
        "set it to uvloop or asyncio, or unset it")


def test_the_collector_runs_less_often_and_leaves_start_up_objects_alone() -> None:
    loop.run(_loop_module(), "asyncio")
    assert gc.get_threshold()[0] == loop.GC_YOUNG
    assert gc.get_freeze_count() > 0
