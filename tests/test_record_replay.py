"""Record and replay over real sockets: `bridge record` stores a source's raw answers,
`bridge replay` feeds them through the config's detection and rules with the recorded clock
and prints what each sink would be sent (sending nothing). The demo's shipped recording
replays to exactly what the live run that recorded it queued, and so does a fresh one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config.loader import load_config
from bridge.demo_recording import live_recording
from bridge.record import read_recording, replay_recording, report
from bridge.record_cli import record
from bridge.resources import demo_config
from bridge.simulators.jtl import JtlSimulator
from tests.test_sources_jtl import TENANT, TOKEN

SYNC = "3c90c3cc-0d44-4b50-8888-8dd25736052a"


def _replayed(out: str) -> list[str]:
    lines = out.splitlines()
    assert lines[0].startswith("replay of ") and lines[0].endswith("nothing was sent")
    return lines[1:]


def test_the_shipped_recording_replays_to_what_its_live_run_sent(
        capsys: pytest.CaptureFixture[str]) -> None:
    shipped = files("bridge").joinpath("recordings/demo-jtl.sent.txt").read_text()
    assert main(["replay", "--demo"]) == 0
    printed = _replayed(capsys.readouterr().out)
    assert printed == shipped.splitlines()
    assert any("failed" in line for line in printed)  # the demo's syncs do fail


async def test_a_fresh_live_run_replays_to_the_same_notifications(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    with path.open("w") as out:
        live = await live_recording(out, tmp_path, polls=25, seed=3)
    with demo_config() as config_path:
        config = load_config(config_path, env={})
    batches = await replay_recording(config, read_recording(path))
    replayed = [n for b in batches for n in (*b.notifications, *b.silenced_notifications)]
    assert live, "the live run sent nothing: the comparison would prove nothing"
    assert [(n.event_id, n.sink, n.rule, n.payload) for n in replayed] == [
        (n.event_id, n.sink, n.rule, n.payload) for n in live]
    assert list(report(replayed)) == list(report(live))


async def test_bridge_record_stores_raw_answers_with_times_and_no_credentials(
        tmp_path: Path) -> None:
    async with JtlSimulator(tenant_id=TENANT, token=TOKEN) as sim:
        sim.add_sync(SYNC, state=2, sync_name="orders", sales_channel="Amazon DE")
        (tmp_path / "rules.toml").write_text(f"""
[[sources]]
name = "erp"
kind = "jtl"
base_url = "{sim.base_url}"
tenant_id = "{TENANT}"
interval = "1m"
[sources.auth]
type = "bearer"
token = "{TOKEN}"
""")
        config = load_config(tmp_path / "rules.toml", env={})
        clock = [datetime(2026, 11, 23, 22, 0, tzinfo=UTC)]
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            clock[0] += timedelta(seconds=seconds)
            sim.set_sync(SYNC, State=4 if len(waits) == 1 else 3)

        path = tmp_path / "poll.jsonl"
        with path.open("w") as out:
            polls = await record(config, "erp", timedelta(minutes=3), out, ids=[],
                                 clock=lambda: clock[0], sleep=sleep, monotonic=lambda:
                                 clock[0].timestamp())
    assert polls == 3 and waits == [60.0, 60.0]
    text = path.read_text()
    assert TOKEN not in text and TENANT not in text
    head, *lines = [json.loads(line) for line in text.splitlines()]
    assert (head["recording"], head["source"], head["kind"]) == (1, "erp", "jtl")
    assert [line["at"] for line in lines] == [
        "2026-11-23T22:00:00+00:00", "2026-11-23T22:01:00+00:00", "2026-11-23T22:02:00+00:00"]
    first = lines[0]["calls"]
    assert [c["url"].removeprefix(sim.base_url) for c in first] == [
        "/v1/workers/status", "/v2/workers"]
    assert json.loads(first[0]["body"])[0]["State"] == 2
    batches = await replay_recording(config, read_recording(path))
    assert [str(e.on) for b in batches for e in b.events] == [
        "appeared", "transition", "transition"]
    assert batches[1].events[0].job is not None
    assert batches[1].events[0].job.name == "Amazon DE: orders"


def test_replay_prints_per_sink_and_refuses_what_is_not_a_recording(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": 1}\n')
    with demo_config() as config_path:
        assert main(["replay", str(bad), "--config", str(config_path)]) == 1
    assert f"{bad}:1: not a bridge recording" in capsys.readouterr().err
    good = files("bridge").joinpath("recordings/demo-jtl.jsonl").read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([good[0], good[1], "{not json"]) + "\n")
    with demo_config() as config_path:
        assert main(["replay", str(broken), "--config", str(config_path)]) == 1
    assert f"{broken}:3: not a recorded poll" in capsys.readouterr().err
