"""Maintenance windows: when a window is open (wall-clock time in its zone, DST included,
across midnight), config errors with file:line, and a running bridge whose injected clock
crosses Europe/Berlin's spring-forward night muting exactly while the window is open."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.config.loader import parse_config
from bridge.errors import ConfigErrors
from bridge.model import DeliveryStatus, Event, EventKind, JobState, JobStatus
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.stages import Batch, Context, stages_for
from bridge.windows import Window
from tests.config_support import pager_sink, push_source, rule, table, window, write_config
from tests.push_support import signed_push
from tests.server_support import served


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


WEEKEND = Window(name="weekend", days=["sat", "sun"], start="22:00", end="06:00",  # type: ignore[arg-type]
                 timezone="Europe/Berlin")
# Europe/Berlin springs forward on Sunday 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST)
# and falls back on Sunday 2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
NIGHT = Window(name="night", start="01:00", end="04:00", timezone="Europe/Berlin")  # type: ignore[arg-type]


@pytest.mark.parametrize(("window", "moment", "is_open"), [
    # Saturday 22:00 Berlin (CET, +1) opens it; it crosses midnight into Sunday.
    (WEEKEND, "2026-03-07T20:59:00", False),
    (WEEKEND, "2026-03-07T21:00:00", True),
    (WEEKEND, "2026-03-08T04:59:00", True),   # Sunday 05:59
    (WEEKEND, "2026-03-08T05:00:00", False),  # Sunday 06:00: closed
    (WEEKEND, "2026-03-08T21:30:00", True),   # Sunday 22:30: Sunday's own window
    (WEEKEND, "2026-03-09T04:30:00", True),   # Monday 05:30: the end of Sunday's window
    (WEEKEND, "2026-03-09T05:30:00", False),
    (WEEKEND, "2026-03-06T21:30:00", False),  # Friday 22:30
    # Summer time (+2): the same wall-clock hours are an hour earlier in UTC.
    (WEEKEND, "2026-06-06T20:00:00", True),   # Saturday 22:00 CEST
    (WEEKEND, "2026-06-06T19:59:00", False),
    # The spring-forward night: 01:00-04:00 local is 00:00-02:00 UTC, two real hours.
    (NIGHT, "2026-03-28T23:59:00", False),    # 00:59 CET
    (NIGHT, "2026-03-29T00:00:00", True),     # 01:00 CET
    (NIGHT, "2026-03-29T01:30:00", True),     # 03:30 CEST (a fixed +1 would say 02:30)
    (NIGHT, "2026-03-29T02:00:00", False),    # 04:00 CEST (a fixed +1 would still be open)
    # The fall-back night: 01:00-04:00 local is 23:00-03:00 UTC, four real hours.
    (NIGHT, "2026-10-24T22:59:00", False),    # 00:59 CEST
    (NIGHT, "2026-10-24T23:00:00", True),     # 01:00 CEST
    (NIGHT, "2026-10-25T02:30:00", True),     # 03:30 CET (a fixed +2 would say closed)
    (NIGHT, "2026-10-25T03:00:00", False),    # 04:00 CET
])
def test_window_open_at(window: Window, moment: str, is_open: bool) -> None:
    assert window.is_open(utc(moment)) is is_open


def test_a_whole_day_and_until_midnight() -> None:
    day = Window(name="d", days=["mon"], start="00:00", end="24:00")  # type: ignore[arg-type]
    evening = Window(name="e", start="22:00", end="24:00")  # type: ignore[arg-type]
    assert day.is_open(utc("2026-03-09T00:00:00"))
    assert day.is_open(utc("2026-03-09T23:59:00"))
    assert not day.is_open(utc("2026-03-10T00:00:00"))
    assert evening.is_open(utc("2026-03-09T23:59:00"))
    assert not evening.is_open(utc("2026-03-10T00:00:00"))


# A rule naming a misspelt window; the window with a bad day, end and timezone. The file
# starts at its first table (lstrip): the line numbers asserted count from there.
BAD = (pager_sink() + rule("r", template="t.j2", mute_during=["weekend-maintenace"])
       + window("weekend-maintenance", "22:00", "25:00", days=["sat", "sunday", "funday"],
                timezone="Europe/Berlinn")).lstrip()


def test_check_reports_bad_windows_with_file_and_line() -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(BAD, "rules.toml", env={})
    lines = [e.render() for e in caught.value.errors]
    assert lines == [
        "rules.toml:11: rules[0].mute_during[0]: unknown window 'weekend-maintenace'; did you "
        "mean 'weekend-maintenance'? (defined: weekend-maintenance)",
        "rules.toml:15: windows[0].days: unknown day 'funday'; write mon, tue, wed, thu, fri, "
        "sat, sun",
        "rules.toml:17: windows[0].end: expected a wall-clock time \"HH:MM\" like \"22:00\", "
        "got '25:00'",
        "rules.toml:18: windows[0].timezone: unknown timezone 'Europe/Berlinn'; use an IANA "
        "name like \"Europe/Berlin\" or \"UTC\"",
    ]


def config_parts(receiver: WebhookReceiver) -> tuple[str, ...]:
    """Failures of two push sources sent to `pager`, muted at night in Berlin for jtl*."""
    return (push_source("jtl-main"), push_source("zendesk"), pager_sink(receiver.url),
            rule("failed", template="note.j2", to="failed", mute_during=["night"]),
            window("night", "01:00", "04:00", timezone="Europe/Berlin", sources=["jtl*"]))


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_berlin_window_mutes_across_the_dst_change(tmp_path: Path) -> None:
    clock = Clock(utc("2026-03-28T23:30:00"))  # 00:30 CET: before the window
    async with WebhookReceiver() as receiver:
        path = write_config(tmp_path, *config_parts(receiver),
                            templates={"note.j2": "{{ source }} {{ job.id }}"})
        async with served(path, admin_token=None, clock=clock) as (bridge, url, http):
            store = bridge.store

            async def fail(source: str, job_id: str, at: str) -> None:
                # Signed at the injected time: the push check's tolerance uses that clock.
                clock.now = utc(at)
                for status in ("run", "boom"):
                    await signed_push(http, url, source, {"id": job_id, "status": status},
                                      f"{job_id}-{status}", at=clock.now)

            await fail("jtl-main", "before", "2026-03-28T23:30:00")   # 00:30 CET: sent
            await fail("jtl-main", "in-cet", "2026-03-29T00:30:00")   # 01:30 CET: muted
            await fail("jtl-main", "in-cest", "2026-03-29T01:30:00")  # 03:30 CEST: muted
            await fail("zendesk", "other", "2026-03-29T01:30:00")     # not a jtl source: sent
            await fail("jtl-main", "after", "2026-03-29T02:00:00")    # 04:00 CEST: sent
            silenced = await store.list_outbox(DeliveryStatus.SILENCED)
            await receiver.wait_for(lambda: len(receiver.requests) >= 3, within=10)
    sent = sorted(r.json()["data"]["text"] for r in receiver.requests)
    assert sent == ["jtl-main after", "jtl-main before", "zendesk other"]
    assert sorted((d.notification.job_id, d.notification.silenced) for d in silenced) == [
        ("in-cest", "window night"), ("in-cet", "window night")]


async def test_active_during_mutes_outside_the_window_in_bridge_test() -> None:
    config = parse_config(pager_sink() + rule("office", active_during=["office-hours"])
                          + window("office-hours", "09:00", "17:00",
                                   days=["mon", "tue", "wed", "thu", "fri"],
                                   timezone="Europe/Berlin"), "rules.toml", env={})
    stages = stages_for(config)
    job = JobStatus(id="j1", state=JobState.FAILED, raw_state="failed")

    async def sent_at(moment: str) -> tuple[int, int]:
        now = utc(moment)
        event = Event(id=f"e-{moment}", on=EventKind.TRANSITION, source="s", at=now, job=job,
                      from_state=JobState.RUNNING, to_state=JobState.FAILED)
        batch = await stages.run(Context(source="s", now=now), Batch(events=(event,)))
        return len(batch.notifications), len(batch.silenced_notifications)

    assert await sent_at("2026-03-09T08:30:00") == (1, 0)  # Monday 09:30 CET
    assert await sent_at("2026-03-09T07:30:00") == (0, 1)  # Monday 08:30 CET
    assert await sent_at("2026-03-14T10:00:00") == (0, 1)  # Saturday


def test_mute_during_and_active_during_together_is_an_error() -> None:
    text = (pager_sink() + rule("r", template="t.j2", mute_during=["w"], active_during=["w"])
            + window("w", "22:00", "06:00")).lstrip()
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", env={})
    assert [e.render() for e in caught.value.errors] == [
        "rules.toml:12: rules[0].active_during: give `mute_during` or `active_during`, not both"]


def case(name: str, at: str, *, expect: list[dict[str, str]]) -> str:
    """A `bridge test` case: job j1 of the source jtl fails at `at`."""
    return table("tests", name=name, expect=expect, event={
        "on": "transition", "source": "jtl", "from": "running", "to": "failed", "at": at,
        "job": {"id": "j1", "state": "failed"}})


def test_bridge_test_places_events_in_and_out_of_a_window(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    (tmp_path / "rules.toml").write_text(
        pager_sink() + rule("failed", to="failed", mute_during=["weekend"])
        + window("weekend", "00:00", "24:00", days=["sat", "sun"], timezone="Europe/Berlin")
        + case("muted on a Saturday in Berlin", "2026-11-27T23:30:00Z", expect=[])
        + case("sent on a Friday evening in Berlin", "2026-11-27T22:30:00Z",
               expect=[{"sink": "pager"}]))
    code = main(["test", "--config", str(tmp_path / "rules.toml")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS  muted on a Saturday in Berlin" in out
    assert "PASS  sent on a Friday evening in Berlin" in out
