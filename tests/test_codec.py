"""One codec for the domain values (bridge.model, pydantic over the dataclasses), used by the
state store, the API and `--event` files; and ISO 8601 durations parsed by pydantic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bridge.config.schema import parse_duration
from bridge.errors import StoreError
from bridge.model import (
    DataError,
    Event,
    EventKind,
    JobState,
    JobStatus,
    Notification,
    Priority,
    SourceHealth,
    TrackedJob,
    from_data,
    from_json,
    to_data,
    to_json,
)
from bridge.store.sql import health_from, health_json, jobs_from

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
JOB = JobStatus(id="8b72", state=JobState.FAILED, raw_state="SleepingError", progress=40.0,
                message="Printer on fire: <ä>", url="https://x.example/8b72",
                fields={"total": 5, "nested": [1, {"a": None}]}, failed_items=3, run=2)
TRACKED = TrackedJob(source="zendesk", status=JOB, first_seen=AT, last_seen=AT,
                     started_at=AT - timedelta(minutes=5), moved_at=AT, finished_at=AT,
                     version=4)
EVENT = Event(id="evt_1", on=EventKind.TRANSITION, source="zendesk", at=AT, job=JOB,
              previous=JOB, from_state=JobState.RUNNING, to_state=JobState.FAILED,
              first_seen=AT, duration=timedelta(seconds=754.5), repeat_of="job-failed")
HEALTH = SourceHealth(source="zendesk", up=False, since=AT, reason="HTTP 503", failures=3,
                      last_poll_at=AT, last_latency=0.25)
NOTE = Notification(event_id="evt_1", rule="r", sink="slack", source="zendesk", job_id="8b72",
                    payload={"text": "hi"}, on=EventKind.TRANSITION, terminal=True,
                    state="failed", priority=Priority.HIGH)


@pytest.mark.parametrize("value", [JOB, TRACKED, EVENT, HEALTH, NOTE])
def test_every_value_comes_back_equal_from_its_json(value: object) -> None:
    assert from_json(type(value), to_json(value)) == value
    assert from_data(type(value), json.loads(to_json(value))) == value
    assert json.loads(to_json(value)) == to_data(value)


def test_the_event_json_keeps_its_contract_names() -> None:
    data = EVENT.as_dict()
    assert list(data) == ["id", "on", "source", "at", "job", "previous", "from", "to",
                          "first_seen", "duration", "reason", "repeat_of"]
    assert (data["from"], data["to"], data["duration"]) == ("running", "failed", 754.5)
    assert list(data["job"]) == ["id", "state", "raw_state", "progress", "message", "url",
                                 "fields", "failed_items", "run"]


def test_rows_written_by_the_previous_codec_still_load() -> None:
    old = ('{"source":"zendesk","status":{"id":"8b72","state":"failed","raw_state":"x",'
           '"progress":40.0,"message":null,"url":null,"fields":{},"failed_items":null,'
           '"run":1},"first_seen":"2026-11-23T10:00:00+00:00","last_seen":'
           '"2026-11-23T10:00:00+00:00","started_at":null,"moved_at":"2026-11-23T10:00:00+00:00",'
           '"stalled":false,"missing_since":null,"vanished":false,"finished_at":null,'
           '"version":0,"seen":true}')
    (job,) = jobs_from([old])
    assert job.first_seen == AT and job.status.state is JobState.FAILED
    note = {k: v for k, v in NOTE.as_dict().items() if k != "priority"}
    assert Notification.from_dict(note).priority is Priority.NORMAL
    assert Notification.from_dict({**note, "priority": None}).priority is Priority.NORMAL


def test_loaded_jobs_share_equal_timestamps_and_strings() -> None:
    rows = [to_json(TRACKED), to_json(TrackedJob(source="zendesk", status=JOB, first_seen=AT,
                                                 last_seen=AT, moved_at=AT))]
    first, second = jobs_from(rows)
    assert first.first_seen is second.first_seen is first.moved_at
    assert first.source is second.source


def test_a_corrupt_stored_job_is_a_store_error() -> None:
    data = TRACKED.as_dict()
    del data["moved_at"]
    with pytest.raises(StoreError, match="stored job '8b72' is corrupt: missing 'moved_at'"):
        jobs_from([json.dumps(data)])


def test_health_rows_round_trip() -> None:
    assert health_from(health_json(HEALTH)) == HEALTH


def test_a_hand_written_event_gets_its_defaults() -> None:
    event = Event.from_dict({"on": "transition", "source": "z", "at": "2026-11-23T10:00:00Z",
                             "from": "", "job": {"id": 123, "state": "failed"},
                             "duration": 754})
    assert event.job is not None
    assert (event.job.id, event.job.raw_state, event.job.fields) == ("123", "failed", {})
    assert event.from_state is None and event.duration == timedelta(seconds=754)
    assert event.id.startswith("evt_")
    again = Event.from_dict({"on": "transition", "source": "z", "at": "2026-11-23T10:00:00Z",
                             "job": {"id": 123, "state": "failed"}})
    assert again.id == event.id  # the same facts, the same id


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"on": "transition", "job": {"id": "x", "state": "exploded"}},
         "'exploded' is not a valid JobState (at job.state)"),
        ({"on": "nope"}, "'nope' is not a valid EventKind (at on)"),
        ({"source": "z"}, "missing 'on'"),
        ({"on": "transition", "job": {"state": "failed"}}, "missing 'job.id'"),
    ],
)
def test_bad_event_data_says_what_and_where_in_one_line(data: dict[str, object],
                                                         message: str) -> None:
    with pytest.raises(DataError) as caught:
        Event.from_dict(data)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("PT1.5H", timedelta(minutes=90)), ("pt30s", timedelta(seconds=30)),
     ("P1W", timedelta(days=7)), (" PT0.5S ", timedelta(milliseconds=500))],
)
def test_iso_durations_are_parsed_by_pydantic(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["-PT5S", "PT", "P1X", "PT5"])
def test_bad_iso_durations_keep_the_message(text: str) -> None:
    with pytest.raises(ValueError, match=r'^expected a duration like "500ms", "30s"'):
        parse_duration(text)
