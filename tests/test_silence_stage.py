"""The silence stage as a table: which match a silence or a window mutes, with what reason,
and which until_resolved silences a batch ends. Pure: the lookup is a list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bridge.config.loader import parse_config
from bridge.config.schema import Rule
from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.silences import Silence, SilenceError, event_fields, new_silence
from bridge.stages import Batch, Context, Match
from bridge.stages.silence import Silencing
from tests.config_support import pager_sink, rule, window

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = parse_config(
    pager_sink() + rule("job-failed", template="t.j2")
    + rule("nightly", template="t.j2", mute_during=["night"])
    + window("night", "22:00", "06:00", sources=["jtl*"]), "rules.toml", env={})
RULES = {rule.name: rule for rule in CONFIG.rules}


def event(source: str = "jtl", job_id: str = "3c90", to: JobState = JobState.FAILED,
          on: EventKind = EventKind.TRANSITION) -> Event:
    job = JobStatus(id=job_id, state=to, raw_state=str(to))
    return Event(id=f"e-{source}-{job_id}-{to}", on=on, source=source, at=NOW, job=job,
                 from_state=JobState.RUNNING if on is EventKind.TRANSITION else None,
                 to_state=to if on is EventKind.TRANSITION else None)


def silence(matchers: dict[str, str], **body: object) -> Silence:
    request: dict[str, object] = {"matchers": matchers, "comment": "why", **body}
    if "until_resolved" not in body and "ends" not in body:
        request["duration"] = "1h"
    return new_silence(request, NOW - timedelta(minutes=1))


async def run(matches: Sequence[tuple[Event, Rule]], silences: Sequence[Silence],
              now: datetime = NOW) -> Batch:
    async def lookup(at: datetime) -> list[Silence]:
        return list(silences)

    batch = Batch(events=tuple(e for e, _ in matches),
                  matches=tuple(Match(event=e, rule=r) for e, r in matches))
    return await Silencing(CONFIG.windows, lookup).run(Context(source="jtl", now=now), batch)


@pytest.mark.parametrize(("matchers", "muted"), [
    ({"source": "jtl"}, True),
    ({"source": "jt?"}, True),
    ({"source": "zendesk"}, False),
    ({"source": "jtl", "job.id": "3c*"}, True),
    ({"source": "jtl", "job.id": "9*"}, False),       # every matcher must match
    ({"rule": "job-failed"}, True),
    ({"rule": "job-*ed"}, True),
    ({"on": "transition", "to": "failed"}, True),
    ({"from": "running", "job.state": "failed"}, True),
    ({"to": "succeeded"}, False),
])
async def test_matchers(matchers: dict[str, str], muted: bool) -> None:
    made = silence(matchers)
    out = await run([(event(), RULES["job-failed"])], [made])
    assert (len(out.silenced), len(out.matches)) == ((1, 0) if muted else (0, 1))
    if muted:
        assert out.silenced[0].reason == f"silence {made.id} (why)"


def test_a_field_the_event_lacks_only_matches_a_star() -> None:
    appeared = event_fields(event(on=EventKind.APPEARED), "new-job")
    assert appeared["to"] == ""
    assert silence({"to": "*"}).matches(appeared)
    assert not silence({"to": "f*"}).matches(appeared)


async def test_pending_and_expired_silences_mute_nothing() -> None:
    later = new_silence({"matchers": {"source": "jtl"},
                         "starts": (NOW + timedelta(hours=1)).isoformat(),
                         "ends": (NOW + timedelta(hours=2)).isoformat()}, NOW)
    over = silence({"source": "jtl"}).expire(NOW - timedelta(seconds=1))
    out = await run([(event(), RULES["job-failed"])], [later, over])
    assert (len(out.silenced), len(out.matches)) == (0, 1)


async def test_until_resolved_ends_with_the_jobs_success_which_is_let_through() -> None:
    held = silence({"source": "jtl", "job.id": "3c90"}, until_resolved=True)
    other_job = silence({"source": "jtl", "job.id": "other"}, until_resolved=True)
    success = event(to=JobState.SUCCEEDED)
    out = await run([(success, RULES["job-failed"])], [held, other_job])
    assert out.ended_silences == (held.id,)
    assert [m.event.id for m in out.matches] == [success.id]
    still = await run([(event(), RULES["job-failed"])], [held])
    assert out.silenced == () and still.ended_silences == ()
    assert [s.reason for s in still.silenced] == [f"silence {held.id} (why)"]


@pytest.mark.parametrize(("source", "hour", "muted"), [
    ("jtl", 23, True), ("jtl", 5, True), ("jtl", 6, False), ("jtl", 12, False),
    ("zendesk", 23, False),  # the window applies to jtl* only
])
async def test_mute_during_a_window(source: str, hour: int, muted: bool) -> None:
    now = NOW.replace(hour=hour)
    out = await run([(event(source=source), RULES["nightly"])], [], now=now)
    assert [s.reason for s in out.silenced] == (["window night"] if muted else [])


@pytest.mark.parametrize(("body", "message"), [
    ({"matchers": {"job.id": "x"}, "duration": "1h", "ends": "2026-11-23T12:00:00Z"},
     "not both"),
    ({"matchers": {"job.id": "x"}, "duration": "1h", "colour": "red"}, "unknown key 'colour'"),
    ({"matchers": {"job.id": ""}, "duration": "1h"}, "non-empty glob"),
    ({"matchers": {"job.id": "x"}, "ends": "2026-11-23T12:00:00"}, "needs a timezone"),
    (["not", "an", "object"], "send a JSON object"),
])
def test_bad_bodies(body: object, message: str) -> None:
    with pytest.raises(SilenceError, match=message):
        new_silence(body, NOW)
