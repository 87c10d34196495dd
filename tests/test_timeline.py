"""The timeline's SVG, built from given events and poll buckets: a bar per run on its job's
row, state colours, marks for failed / cancelled / stalled / vanished runs with tooltips,
the range, the hours axis and night bands in the configured zone, the row cap."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pytest import approx

from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.server import timeline
from bridge.server.timeline import COLOURS, source_timeline
from bridge.store.poll_buckets import PollBucket

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def event(job_id: str, state: JobState, hours_ago: float, *, run: int = 1,
          on: EventKind = EventKind.TRANSITION, name: str | None = None,
          message: str | None = None, duration: timedelta | None = None,
          reason: str | None = None) -> Event:
    job = JobStatus(id=job_id, state=state, raw_state=str(state), run=run, name=name,
                    message=message)
    return Event(id=f"{job_id}-{run}-{state}-{on}-{hours_ago}", on=on, source="jtl",
                 at=at(hours_ago), job=job, to_state=state, duration=duration, reason=reason)


def runs_of(job_id: str, spans: list[tuple[float, float, JobState]]) -> list[Event]:
    """A recurring job's runs: each starts running `start` hours ago and ends in its state
    `end` hours ago (end None: still running)."""
    out = []
    for number, (start, end, state) in enumerate(spans, start=1):
        out.append(event(job_id, JobState.RUNNING, start, run=number,
                         on=EventKind.APPEARED if number == 1 else EventKind.TRANSITION))
        if end is not None:
            out.append(event(job_id, state, end, run=number))
    return out


def svg(events: list[Event], key: str = "6h", buckets: list[PollBucket] | None = None,
        zone: Any = UTC) -> ET.Element:
    drawn = source_timeline("jtl", events, buckets or [], key=key, now=NOW, zone=zone)
    assert drawn is not None
    return ET.fromstring(str(drawn.svg))


def bars(root: ET.Element, job_id: str | None = None) -> list[ET.Element]:
    rows = [g for g in root.iter("g") if g.get("class") == "tl-row"
            and (job_id is None or g.get("data-job") == job_id)]
    return [r for g in rows for r in g.iter("rect") if r.get("class") == "tl-run"]


def marks(root: ET.Element) -> list[str]:
    return [p.get("data-mark", "") for p in root.iter("path") if p.get("class") == "tl-mark"]


def title(element: ET.Element) -> str:
    found = element.find("title")
    assert found is not None and found.text is not None
    return found.text


def test_each_run_of_a_job_is_a_bar_on_its_row_in_its_state_colour() -> None:
    root = svg(runs_of("sync-1", [(5, 4.5, JobState.SUCCEEDED), (3, 2.9, JobState.FAILED),
                                  (1, None, JobState.RUNNING)]))
    drawn = bars(root, "sync-1")
    assert [b.get("data-state") for b in drawn] == ["succeeded", "failed", "running"]
    assert [b.get("fill") for b in drawn] == [COLOURS["succeeded"], COLOURS["failed"],
                                             COLOURS["running"]]
    assert [b.get("data-run") for b in drawn] == ["1", "2", "3"]
    xs = [float(b.get("x", "")) for b in drawn]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert [b.get("data-open") for b in drawn] == [None, None, "1"]


def test_a_bar_spans_its_run_from_start_to_end_to_scale() -> None:
    # 6 h over the plot's width: a run from 3 h ago to 1.5 h ago is half the plot to 3/4.
    [bar] = bars(svg(runs_of("sync-1", [(3, 1.5, JobState.SUCCEEDED)])))
    plot = timeline.WIDTH - timeline.LABEL
    assert float(bar.get("x", "")) == timeline.LABEL + plot / 2
    assert float(bar.get("width", "")) == plot / 4


def test_a_failed_run_is_marked_and_its_tooltip_names_job_state_start_and_duration() -> None:
    events = [event("3c90", JobState.RUNNING, 2, on=EventKind.APPEARED,
                    name="Amazon DE: orders"),
              event("3c90", JobState.FAILED, 1.75, name="Amazon DE: orders",
                    message="Provider API returned 503")]
    root = svg(events)
    [bar] = bars(root)
    assert title(bar) == ("Amazon DE: orders · run 1: failed · started Wed 10:00 · 15m · "
                          "Provider API returned 503")
    assert marks(root) == ["failed"]
    [mark] = [p for p in root.iter("path") if p.get("class") == "tl-mark"]
    assert title(mark).startswith("Amazon DE: orders: failed at Wed 10:15")
    label = next(t for t in root.iter("text") if t.get("class") == "tl-label")
    assert label.text == "Amazon DE: orders"


def test_cancelled_stalled_and_vanished_runs_are_marked_and_succeeded_ones_not() -> None:
    events = [*runs_of("ok", [(4, 3, JobState.SUCCEEDED)]),
              *runs_of("stopped", [(4, 3, JobState.CANCELLED)]),
              event("slow", JobState.RUNNING, 4, on=EventKind.APPEARED),
              event("slow", JobState.RUNNING, 2, on=EventKind.STALLED,
                    reason="no progress for 2h"),
              event("gone", JobState.RUNNING, 4, on=EventKind.APPEARED),
              event("gone", JobState.RUNNING, 1, on=EventKind.VANISHED)]
    root = svg(events)
    assert sorted(marks(root)) == ["cancelled", "stalled", "vanished"]
    stalled = next(p for p in root.iter("path") if p.get("data-mark") == "stalled")
    assert "no progress for 2h" in title(stalled)
    # A vanished job's run ends when it vanished; a stalled one goes on.
    [gone] = bars(root, "gone")
    [slow] = bars(root, "slow")
    assert gone.get("data-open") is None and slow.get("data-open") == "1"


def test_jobs_with_the_most_flagged_runs_come_first_then_the_most_recently_active() -> None:
    events = [*runs_of("twice", [(5.5, 5.4, JobState.FAILED), (5.3, 5.2, JobState.FAILED)]),
              *runs_of("old-ok", [(5, 4, JobState.SUCCEEDED)]),
              *runs_of("new-ok", [(2, 1, JobState.SUCCEEDED)]),
              *runs_of("old-failed", [(5, 4.5, JobState.FAILED)])]
    root = svg(events)
    rows = [g.get("data-job") for g in root.iter("g") if g.get("class") == "tl-row"]
    assert rows == ["twice", "old-failed", "new-ok", "old-ok"]


def test_the_range_decides_how_far_back_runs_are_drawn() -> None:
    events = [*runs_of("night", [(10, 9.5, JobState.FAILED)]),
              *runs_of("noon", [(1, 0.5, JobState.SUCCEEDED)])]
    assert [b.get("data-state") for b in bars(svg(events, "6h"))] == ["succeeded"]
    wide = svg(events, "24h")
    assert wide.get("data-range") == "24h"
    assert sorted(b.get("data-state") or "" for b in bars(wide)) == ["failed", "succeeded"]
    [night] = bars(wide, "night")
    plot = timeline.WIDTH - timeline.LABEL
    assert float(night.get("x", "")) == approx(timeline.LABEL + plot * 14 / 24, abs=0.1)


def test_a_run_that_began_before_the_range_starts_at_its_left_edge() -> None:
    [bar] = bars(svg(runs_of("long", [(8, 1, JobState.SUCCEEDED)])))
    assert float(bar.get("x", "")) == timeline.LABEL
    assert "started Wed 04:00 · 7h" in title(bar)


def test_a_run_first_seen_finished_starts_its_duration_before_the_event() -> None:
    # Seen only once it had failed (it ran between two polls): detection gave its duration.
    root = svg([event("quick", JobState.FAILED, 1, on=EventKind.APPEARED,
                      duration=timedelta(minutes=30))])
    [bar] = bars(root)
    plot = timeline.WIDTH - timeline.LABEL
    assert float(bar.get("x", "")) == approx(timeline.LABEL + plot * 4.5 / 6, abs=0.1)
    assert "started Wed 10:30 · 30m" in title(bar)


def axis(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("text")
            if t.get("class") == "tl-axis" and t.get("text-anchor") == "middle"]


def test_the_hours_axis_labels_whole_hours_in_the_configured_zone() -> None:
    events = runs_of("a", [(1, 0.5, JobState.SUCCEEDED)])
    assert axis(svg(events)) == ["06:00", "07:00", "08:00", "09:00", "10:00", "11:00",
                                 "12:00"]
    # Berlin is UTC+1 in December.
    assert axis(svg(events, zone=ZoneInfo("Europe/Berlin")))[0] == "07:00"
    assert axis(svg(events, "24h")) == ["12:00", "15:00", "18:00", "21:00", "00:00", "03:00",
                                        "06:00", "09:00", "12:00"]
    assert axis(svg(events, "7d")) == ["Thu 26", "Fri 27", "Sat 28", "Sun 29", "Mon 30",
                                       "Tue 01", "Wed 02"]


def test_night_hours_are_shaded_in_the_configured_zone() -> None:
    events = runs_of("a", [(1, 0.5, JobState.SUCCEEDED)])
    plot = timeline.WIDTH - timeline.LABEL

    def nights(zone: Any) -> list[tuple[float, float]]:
        return [(float(r.get("x", "")), float(r.get("width", "")))
                for r in svg(events, "24h", zone=zone).iter("rect")
                if r.get("class") == "tl-night"]

    # 22:00 to 06:00 UTC: 10 h to 18 h into a range that starts at 12:00 the day before.
    assert nights(UTC) == [approx((timeline.LABEL + plot * 10 / 24, plot * 8 / 24), abs=0.1)]
    assert nights(ZoneInfo("Europe/Berlin")) == [approx((timeline.LABEL + plot * 9 / 24,
                                                         plot * 8 / 24), abs=0.1)]


def test_rows_beyond_the_cap_are_summed_up_as_and_n_more() -> None:
    events = [e for n in range(timeline.MAX_ROWS + 3)
              for e in runs_of(f"job-{n:02}", [(5, 4, JobState.SUCCEEDED)])]
    drawn = source_timeline("jtl", events, [], key="6h", now=NOW, zone=UTC)
    assert drawn is not None and drawn.hidden == 3
    root = ET.fromstring(str(drawn.svg))
    assert len(bars(root)) == timeline.MAX_ROWS
    more = [t.text for t in root.iter("text") if t.get("class") == "tl-more"]
    assert more == ["and 3 more jobs: see the table"]
    assert len(drawn.table) == timeline.MAX_ROWS + 3  # the table lists them all


def test_the_poll_chart_stacks_failed_polls_on_answered_ones_per_column() -> None:
    buckets = [PollBucket(source="jtl", start=at(1), ok=28, errors=2,
                          last_error="HTTP 503 from JTL"),
               PollBucket(source="jtl", start=at(0.5), ok=30),
               PollBucket(source="jtl", start=at(7), ok=30)]  # outside 6 h
    root = svg([], buckets=buckets)
    cols = [g for g in root.iter("g") if g.get("class") == "tl-poll-col"]
    assert len(cols) == 2
    assert [(r.get("data-kind"), r.get("data-count")) for r in cols[0].iter("rect")] == [
        ("ok", "28"), ("error", "2")]
    assert title(cols[0]) == "Wed 11:00–11:05: 30 polls, 2 failed (last error: HTTP 503 from JTL)"
    texts = [t.text for t in root.iter("text")]
    assert "60 polls, 2 failed" in texts


def test_a_source_with_neither_runs_nor_polls_in_the_range_draws_nothing() -> None:
    old = runs_of("a", [(30, 29, JobState.SUCCEEDED)])
    assert source_timeline("jtl", old, [], key="24h", now=NOW, zone=UTC) is None


def test_texts_from_the_api_are_escaped() -> None:
    events = runs_of("<b>x</b>", [(2, 1, JobState.FAILED)])
    root = svg(events)  # parses: nothing unescaped broke the markup
    label = next(t for t in root.iter("text") if t.get("class") == "tl-label")
    assert label.text == "<b>x</b>"
    drawn = source_timeline("jtl", events, [], key="6h", now=NOW, zone=UTC)
    assert drawn is not None and "<b>" not in str(drawn.svg)


def test_an_unknown_range_is_the_default() -> None:
    assert timeline.range_key("2y") == timeline.range_key(None) == "6h"
    assert timeline.range_key("7d") == "7d"


def test_range_links_keep_the_other_filters_and_mark_the_current_one() -> None:
    links = timeline.range_links("24h", {"source": "jtl", "state": None, "range": "24h"})
    assert [(link["key"], link["href"], link["current"]) for link in links] == [
        ("6h", "/?source=jtl#timeline", False),
        ("24h", "/?source=jtl&range=24h#timeline", True),
        ("7d", "/?source=jtl&range=7d#timeline", False)]


def test_a_bucket_begun_before_the_range_is_left_out_of_the_chart() -> None:
    begun = PollBucket(source="jtl", start=at(6) - timedelta(minutes=2), ok=5)
    root = svg([], buckets=[begun, PollBucket(source="jtl", start=at(1), ok=1)])
    assert [r.get("data-count") for r in root.iter("rect") if r.get("class") == "tl-poll"] == [
        "1"]


def test_a_run_whose_start_was_not_read_says_it_started_by_its_first_event() -> None:
    # Only the middle of the run is stored (its appearance was pruned): a progress event.
    root = svg([event("long", JobState.RUNNING, 3, on=EventKind.PROGRESS),
                event("long", JobState.SUCCEEDED, 1)])
    [bar] = bars(root)
    assert "run 1: succeeded · started by Wed 09:00 · at least 2h" in title(bar)
