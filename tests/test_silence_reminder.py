"""A sink's daily reminder of long silences (`silence_reminder`): which silences are long,
when the day is due (wall-clock time in a zone, DST included), one message a day per sink
through the outbox however many instances run or restart, nothing when no silence is long,
and `bridge check` errors with file:line. End to end over real sockets: a real `Bridge`
(SQLite), the Zendesk simulator, the fake Slack and a standardwebhooks-verifying receiver,
on the test's clock."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.checks.check import check
from bridge.config.loader import load_config, parse_config
from bridge.errors import ConfigErrors
from bridge.model import DeliveryStatus, Notification
from bridge.silence_reminder import RULE, SilenceReminder, notification
from bridge.silences import Silence, new_silence
from bridge.simulators.slack import FakeSlack
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.simulators.zendesk import ZendeskSimulator
from bridge.store.base import PollCommit, Store
from tests import test_groups_e2e as groups_e2e
from tests.config_support import rule, sink, slack_sink, write_config
from tests.crash_support import SECRET, eventually, zendesk_source
from tests.schema_check import SchemaCheck
from tests.store_fixtures import BACKENDS, opened, store_url
from tests.test_groups_e2e import CHANNEL, T0, Clock, jobs, recorded, started
from tests.test_store_contract import note

zendesk = groups_e2e.zendesk
slack = groups_e2e.slack
receiver = groups_e2e.receiver

# T0 is Monday 2026-11-23 10:00 UTC (11:00 in Berlin); the reminders are due at 12:00 there.
DUE = T0 + timedelta(hours=1)
REMINDER = {"at": "12:00", "timezone": "Europe/Berlin"}


def made(body: dict[str, object], at: datetime) -> Silence:
    return new_silence(body, at)


# --- which silences, which day -------------------------------------------------------------


def reminder(**fields: object) -> SilenceReminder:
    return SilenceReminder.model_validate({"at": "09:00", **fields})


def test_a_silence_on_for_longer_than_the_threshold_is_long() -> None:
    old = made({"matchers": {"source": "jtl*"}, "duration": "30h"}, T0 - timedelta(hours=25))
    assert reminder().is_long(old, T0)
    assert not reminder(longer_than="2d").is_long(old, T0)


def test_a_silence_ending_later_than_the_threshold_or_never_is_long() -> None:
    ahead = made({"matchers": {"source": "jtl*"}, "duration": "3d"}, T0 - timedelta(hours=1))
    open_ended = made({"matchers": {"job.id": "8b72"}, "until_resolved": True},
                      T0 - timedelta(minutes=5))
    assert reminder().is_long(ahead, T0)
    assert reminder().is_long(open_ended, T0)


def test_a_short_pending_or_ended_silence_is_not_long() -> None:
    short = made({"matchers": {"source": "jtl*"}, "duration": "2h"}, T0 - timedelta(hours=1))
    pending = made({"matchers": {"source": "jtl*"}, "duration": "3d",
                    "starts": (T0 + timedelta(hours=1)).isoformat()}, T0)
    ended = made({"matchers": {"source": "jtl*"}, "duration": "30h"}, T0 - timedelta(hours=31))
    assert not any(reminder().is_long(s, T0) for s in (short, pending, ended))


def test_the_day_is_due_from_the_wall_clock_time_in_the_zone_across_dst() -> None:
    berlin = reminder(timezone="Europe/Berlin")
    # Winter: 09:00 in Berlin is 08:00 UTC; summer (after 2027-03-28): 07:00 UTC.
    assert berlin.due_day(datetime(2026, 11, 23, 7, 59, tzinfo=UTC), "UTC") is None
    assert berlin.due_day(datetime(2026, 11, 23, 8, 0, tzinfo=UTC), "UTC") == date(2026, 11, 23)
    assert berlin.due_day(datetime(2027, 3, 29, 6, 59, tzinfo=UTC), "UTC") is None
    assert berlin.due_day(datetime(2027, 3, 29, 7, 0, tzinfo=UTC), "UTC") == date(2027, 3, 29)
    # Until local midnight, then the next day is not due before 09:00.
    assert berlin.due_day(datetime(2026, 11, 23, 22, 59, tzinfo=UTC), "UTC") == date(2026, 11, 23)
    assert berlin.due_day(datetime(2026, 11, 23, 23, 0, tzinfo=UTC), "UTC") is None


def test_without_a_timezone_the_bridge_timezone_is_used() -> None:
    moment = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    assert reminder().due_day(moment, "Europe/Berlin") == date(2026, 11, 23)
    assert reminder().due_day(moment, "UTC") is None


# --- bridge check ---------------------------------------------------------------------------

SINK = """
[[sinks]]
name = "pager"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
{line}
"""


@pytest.mark.parametrize(("line", "message"), [
    ('silence_reminder = { at = "9am" }',
     'sinks[0].silence_reminder.at: expected a wall-clock time "HH:MM"'),
    ('silence_reminder = { at = "09:00", timezone = "Europe/Berln" }',
     "sinks[0].silence_reminder.timezone: unknown timezone 'Europe/Berln'"),
    ('silence_reminder = { at = "09:00", longer_than = "0s" }',
     "sinks[0].silence_reminder.longer_than:"),
    ('silence_reminder = { at = "09:00", every = "1d" }',
     "sinks[0].silence_reminder.every:"),
    ('silence_reminder = { timezone = "UTC" }', "sinks[0].silence_reminder.at:"),
])
def test_check_reports_a_bad_silence_reminder_with_file_and_line(line: str,
                                                                  message: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(SINK.format(line=line), "rules.toml", env={})
    [error] = [e.render() for e in caught.value.errors]
    assert error.startswith(f"rules.toml:6: {message}"), error


def test_check_reports_a_reminder_template_that_fails(tmp_path: Path) -> None:
    path = write_config(tmp_path, SINK.format(
        line='silence_reminder = { at = "09:00", template = "bad.slack.j2" }'),
        templates={"bad.slack.j2": "{{ silences | first | attr('nope') | int + 'x' }}"})
    out = io.StringIO()
    assert check(load_config(path, env={}), out) == 1
    [problem, _] = out.getvalue().splitlines()
    line = path.read_text().splitlines().index(
        'silence_reminder = { at = "09:00", template = "bad.slack.j2" }') + 1
    assert problem.startswith(f"{path}:{line}: sinks[0].silence_reminder: bad.slack.j2:")


# --- exactly once per (sink, day), in every store backend -------------------------------


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_url(request.param, tmp_path) as url, opened(url) as value:
        yield value


def a_reminder(sink: str, day: date) -> Notification:
    return notification(sink, day, {"text": f"reminder for {day}"})


async def test_queue_once_queues_a_days_reminder_once_whoever_races_for_it(
        store: Store) -> None:
    day = date(2026, 11, 23)
    first = await asyncio.gather(*(
        store.queue_once("silence-reminder:ops", day.isoformat(), [a_reminder("ops", day)],
                         T0, T0 + timedelta(days=2)) for _ in range(4)))
    again = await store.queue_once("silence-reminder:ops", day.isoformat(),
                                   [a_reminder("ops", day)], T0 + timedelta(hours=1),
                                   T0 + timedelta(days=2))
    other = await store.queue_once("silence-reminder:pager", day.isoformat(),
                                   [a_reminder("pager", day)], T0, T0 + timedelta(days=2))
    rows = await store.list_outbox()
    assert sorted(first) == [False, False, False, True] and not again and other
    assert sorted(r.notification.sink for r in rows) == ["ops", "pager"]


async def test_queue_once_without_notifications_only_claims_the_day(store: Store) -> None:
    day = date(2026, 11, 23).isoformat()
    assert await store.queue_once("silence-reminder:ops", day, [], T0, T0 + timedelta(days=2))
    assert not await store.queue_once("silence-reminder:ops", day, [a_reminder(
        "ops", date(2026, 11, 23))], T0, T0 + timedelta(days=2))
    assert await store.list_outbox() == []


async def test_silenced_count_counts_the_rows_each_silence_muted(store: Store) -> None:
    # `sil_1` must not count `sil_10`'s rows: the id is matched whole, `_` literally.
    muted = [replace(note(n), silenced=f"silence {sid} (ERP upgrade)")
             for n, sid in ((1, "sil_1"), (2, "sil_1"), (3, "sil_10"), (4, "silX1"))]
    await store.commit_poll(PollCommit(source="src", notifications=[note(5), *muted], at=T0))
    counts = [await store.silenced_count(sid) for sid in ("sil_1", "sil_10", "sil_2")]
    assert counts == [2, 1, 0]


# --- end to end -------------------------------------------------------------------------


def config(tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
           receiver: WebhookReceiver) -> Path:
    return write_config(
        tmp_path, zendesk_source(zendesk, interval="1h"),
        slack_sink(slack.api_url, token=slack.token, min_interval="1ms",
                   silence_reminder=REMINDER),
        sink("pager", "webhook", url=receiver.url, secret=SECRET, timeout="2s",
             retry={"schedule": ["200ms"], "attempts": 100}, silence_reminder=REMINDER),
        rule("failures", to=["failed"], notify=["ops-slack", "pager"]))


async def reminders(bridge: Bridge) -> list[Notification]:
    """Decide what is due now (the loop may have done it already) and list the reminder
    rows queued so far."""
    await bridge.reminders.remind_due()
    return [row.notification for row in await bridge.store.list_outbox()
            if row.notification.rule == RULE]


async def test_one_reminder_a_day_lists_the_long_silences_with_what_they_muted(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver, webhook_schema_check: SchemaCheck) -> None:
    ids = jobs("job-", 3, zendesk)
    clock = Clock()
    path = config(tmp_path, zendesk, slack, receiver)
    bridge = await started(path, clock)
    try:
        long = made({"matchers": {"source": "zendesk", "rule": "failures"}, "duration": "3d",
                     "comment": "ERP upgrade", "author": "ana"}, T0 - timedelta(hours=25))
        open_ended = made({"matchers": {"source": "zendesk", "job.id": ids[0]},
                           "until_resolved": True, "author": "slack:bo (U2)"}, T0)
        short = made({"matchers": {"job.id": "other"}, "duration": "2h"}, T0)
        for silence in (long, open_ended, short):
            await bridge.store.add_silence(silence)
        for job_id in ids:
            zendesk.set_job(job_id, status="failed", message=f"{job_id} ran out of paper")
        await bridge.pipeline.poll("zendesk")  # 3 failures x 2 sinks, all muted by `long`
        clock.now = DUE - timedelta(seconds=1)
        assert await reminders(bridge) == []
        clock.now = DUE
        assert len(await reminders(bridge)) == 2  # one per sink
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 1, within=10)
        await receiver.wait_for(lambda: len(receiver.requests) == 1, within=10)
        await recorded(bridge)  # before the clock jumps past the rows' claim lease
        clock.now = DUE + timedelta(hours=11)  # 23:00 in Berlin: the same day
        assert len(await reminders(bridge)) == 2
    finally:
        await bridge.__aexit__(None, None, None)
    [message] = slack.roots(CHANNEL)
    text = str(message.text)
    assert text.startswith("🔕 *2 long silences* in force")
    assert f"`{long.id}` rule=failures source=zendesk" in text
    assert "6 notifications silenced · by ana · ERP upgrade" in text
    assert f"`{open_ended.id}` job.id={ids[0]} source=zendesk" in text
    assert "until resolved · 0 notifications silenced · by slack:bo (U2)" in text
    assert short.id not in text
    [request] = receiver.requests
    body = request.json()
    assert request.verified and body["type"] == "silence.reminder"
    assert webhook_schema_check.validated == ["silence.reminder"]
    assert body["timestamp"] == "2026-11-23T11:00:00Z"
    data = body["data"]
    assert (data["sink"], data["longer_than"]) == ("pager", 86400)
    assert [(s["id"], s["silenced"], s["ends"]) for s in data["silences"]] == [
        (long.id, 6, "2026-11-25T09:00:00Z"), (open_ended.id, 0, None)]
    assert data["silences"][0]["author"] == "ana" and data["text"].startswith("🔕")


async def test_a_restart_sends_no_second_reminder_that_day_and_the_next_day_sends_one(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    clock = Clock()
    path = config(tmp_path, zendesk, slack, receiver)
    bridge = await started(path, clock)
    try:
        await bridge.store.add_silence(made({"matchers": {"source": "zendesk"},
                                             "duration": "3d"}, T0))
        clock.now = DUE
        assert len(await reminders(bridge)) == 2
        await recorded(bridge)
    finally:
        await bridge.__aexit__(None, None, None)
    clock.now = DUE + timedelta(hours=2)
    for _ in range(2):  # restarted twice on the same day: nothing more
        bridge = await started(path, clock)
        try:
            assert len(await reminders(bridge)) == 2
        finally:
            await bridge.__aexit__(None, None, None)
    clock.now = DUE + timedelta(days=1)
    bridge = await started(path, clock)
    try:
        queued = await reminders(bridge)
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 2, within=10)
        await receiver.wait_for(lambda: len(receiver.requests) == 2, within=10)
    finally:
        await bridge.__aexit__(None, None, None)
    assert sorted(n.event_id for n in queued) == [
        "silence-reminder:ops-slack:2026-11-23", "silence-reminder:ops-slack:2026-11-24",
        "silence-reminder:pager:2026-11-23", "silence-reminder:pager:2026-11-24"]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2


async def test_two_instances_on_one_store_send_the_days_reminder_once(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    clock = Clock()
    path = config(tmp_path, zendesk, slack, receiver)
    first = await started(path, clock)
    second = await started(path, clock)
    try:
        await first.store.add_silence(made({"matchers": {"source": "zendesk"},
                                            "duration": "3d"}, T0))
        clock.now = DUE
        await asyncio.gather(first.reminders.remind_due(), second.reminders.remind_due())
        queued = await reminders(second)
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 1, within=10)
        await receiver.wait_for(lambda: len(receiver.requests) == 1, within=10)
    finally:
        await second.__aexit__(None, None, None)
        await first.__aexit__(None, None, None)
    assert len(queued) == 2
    assert len(slack.roots(CHANNEL)) == 1 and len(receiver.requests) == 1


async def test_no_long_silence_sends_nothing_and_a_later_one_waits_for_the_next_day(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    clock = Clock()
    bridge = await started(config(tmp_path, zendesk, slack, receiver), clock)
    try:
        await bridge.store.add_silence(made({"matchers": {"source": "zendesk"},
                                             "duration": "2h"}, T0))
        clock.now = DUE
        assert await reminders(bridge) == []
        # Long from now on, the same day: the day was decided at its reminder time.
        await bridge.store.add_silence(made({"matchers": {"rule": "failures"},
                                             "duration": "3d"}, DUE))
        clock.now = DUE + timedelta(hours=1)
        assert await reminders(bridge) == []
        clock.now = DUE + timedelta(days=1)
        assert len(await reminders(bridge)) == 2
    finally:
        await bridge.__aexit__(None, None, None)


async def test_a_reminder_the_receiver_refuses_is_retried_by_the_outbox(
        tmp_path: Path, zendesk: ZendeskSimulator, slack: FakeSlack,
        receiver: WebhookReceiver) -> None:
    clock = Clock()
    bridge = await started(config(tmp_path, zendesk, slack, receiver), clock)
    try:
        await bridge.store.add_silence(made({"matchers": {"source": "zendesk"},
                                             "duration": "3d"}, T0))
        receiver.script([503])
        clock.now = DUE
        assert len(await reminders(bridge)) == 2
        await receiver.wait_for(lambda: len(receiver.requests) == 1, within=10)

        async def retry_recorded() -> bool:
            rows = await bridge.store.list_outbox(DeliveryStatus.PENDING)
            return any(r.attempts == 1 for r in rows if r.notification.sink == "pager")

        await eventually(retry_recorded, within=10, what="the 503 recorded for a retry")
        clock.advance(5)  # past the sink's 200 ms retry wait (and its jitter)
        bridge.workers.wake()
        await receiver.wait_for(lambda: len(receiver.requests) == 2, within=10)
        await slack.wait_for(lambda: len(slack.roots(CHANNEL)) == 1, within=10)
    finally:
        await bridge.__aexit__(None, None, None)
    assert [r.status for r in receiver.requests] == [503, 200]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
