"""Each pipeline stage on its own, with plain tables: a batch in, the batch out.

The stages are the ones `bridge.stages.build_stages` composes for the pipeline, built from a
real config (bundled templates); only enqueue touches a store (SQLite in a tmp dir).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Config, parse_config
from bridge.errors import SourceMisconfigured, SourceUnavailable
from bridge.model import Event, EventKind, JobState, JobStatus, PollResult, SourceHealth, TrackedJob
from bridge.rules import Outcome
from bridge.stages import Batch, Chain, Context, Match, Memory, build_stages, stages_for
from bridge.stages.repeat import reminder
from bridge.store.base import RuleMark
from tests.store_fixtures import opened

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RULES = """
[[rules]]
name = "failed"
on = "transition"
to = ["failed"]
template = "transition.slack.j2"
notify = ["hook"]
throttle = "10m"
repeat = "1h"

[[rules]]
name = "succeeded"
on = "transition"
to = ["succeeded"]
template = "transition.slack.j2"
notify = ["hook", "hook2"]

[[rules]]
name = "stalled"
on = "stalled"
template = "stalled.slack.j2"
notify = ["hook"]
repeat = "30m"

[[rules]]
name = "broken"
on = "progress"
template = "broken.j2"
notify = ["hook"]
throttle = "5m"
"""


def make_config(tmp_path: Path, rules: str = RULES, down_after: int = 1,
                ids: str = "[]") -> Config:
    (tmp_path / "broken.j2").write_text("{{ job.nope.deeper }}", encoding="utf-8")
    text = f"""
[bridge]
templates = "{tmp_path}"

[[sources]]
name = "zen"
kind = "zendesk"
base_url = "https://acme.zendesk.invalid"
down_after = {down_after}
ids = {ids}

[[sinks]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.invalid/a"

[[sinks]]
name = "hook2"
kind = "webhook"
url = "https://hooks.example.invalid/b"
{rules}"""
    return parse_config(text, str(tmp_path / "rules.toml"), {})


def status(job_id: str = "j1", state: str = "running", progress: float | None = 10.0) -> JobStatus:
    return JobStatus(id=job_id, state=JobState(state), raw_state=state, progress=progress)


def tracked(job_id: str = "j1", state: str = "running", *, version: int = 1,
            stalled: bool = False, finished: datetime | None = None) -> TrackedJob:
    return TrackedJob(source="zen", status=status(job_id, state), first_seen=T0, last_seen=T0,
                      moved_at=T0, stalled=stalled, finished_at=finished, version=version)


def transition(to: str, *, job_id: str = "j1", event_id: str = "e1") -> Event:
    return Event(id=event_id, on=EventKind.TRANSITION, source="zen", at=T0,
                 job=status(job_id, to), previous=status(job_id, "running"),
                 from_state=JobState.RUNNING, to_state=JobState(to))


def mark(rule: str, *, job_id: str = "j1", at: datetime = T0,
         state: str = "failed") -> RuleMark:
    return RuleMark(rule=rule, source="zen", job_id=job_id, notified_at=at, state=state)


def marks(*items: RuleMark) -> dict[tuple[str, str, str], RuleMark]:
    return {(m.rule, m.source, m.job_id): m for m in items}


async def run(chain: Chain, stage: str, ctx: Context, batch: Batch) -> Batch:
    return await chain.get(stage).run(ctx, batch)


# --- the chain -------------------------------------------------------------------------------


def test_the_pipeline_runs_the_stages_in_one_order(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert stages_for(config).name == "detect -> repeat -> route -> silence -> group -> render"


async def test_a_stage_list_with_a_store_ends_with_the_commit(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with opened(f"sqlite:///{tmp_path / 'state.db'}") as store:
        chain = stages_for(config)
        with_store = build_stages(config, *_parts(config), store=store)
        assert with_store.name == f"{chain.name} -> enqueue"


def _parts(config: Config) -> tuple[Any, Any]:
    from bridge.render import Renderer, compile_when
    from bridge.rules import RuleBook

    return RuleBook(config.rules, compile_when), Renderer(config, strict=False)


def test_an_unknown_stage_name_is_a_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        stages_for(make_config(tmp_path)).get("no-such-stage")


# --- detect ----------------------------------------------------------------------------------

UP = SourceHealth(source="zen", since=T0 - timedelta(hours=1))
DOWN = SourceHealth(source="zen", up=False, since=T0 - timedelta(minutes=5), failures=3,
                    reason="HTTP 503")

DETECT_HEALTH = [
    # (health before, batch, down_after, events, up after (None: health unchanged))
    (UP, Batch(error=SourceUnavailable("HTTP 503")), 1, [EventKind.SOURCE_DOWN], False),
    (UP, Batch(error=SourceUnavailable("HTTP 503")), 3, [], True),
    (UP, Batch(error=SourceMisconfigured("HTTP 401")), 3, [EventKind.SOURCE_DOWN], False),
    (DOWN, Batch(error=SourceUnavailable("HTTP 503")), 1, [], False),
    (DOWN, Batch(poll=PollResult(observations=())), 1, [EventKind.SOURCE_UP], True),
    (UP, Batch(poll=PollResult(observations=())), 1, [], True),
    # Pushed observations say nothing about the source's health.
    (DOWN, Batch(poll=PollResult(observations=()), pushed=True), 1, [], None),
    # Neither a poll nor an error: the events given (bridge test) pass through.
    (DOWN, Batch(events=(transition("failed"),)), 1, [EventKind.TRANSITION], None),
]


@pytest.mark.parametrize(("before", "batch", "down_after", "kinds", "up"), DETECT_HEALTH)
async def test_detect_turns_a_poll_outcome_into_health_and_source_events(
    tmp_path: Path, before: SourceHealth, batch: Batch, down_after: int,
    kinds: list[EventKind], up: bool | None,
) -> None:
    chain = stages_for(make_config(tmp_path, down_after=down_after))
    out = await run(chain, "detect", Context(source="zen", now=T0, health=before), batch)
    assert [e.on for e in out.events] == kinds
    assert (out.health.up if out.health is not None else None) == up


DETECT_JOBS = [
    # (known jobs, observations, complete, ids kept by config, watches,
    #  events, upserted ids, removed ids, finished watches)
    ({}, [status("a")], True, "[]", set(), [EventKind.APPEARED], ["a"], [], []),
    ({"a": tracked("a")}, [status("a", "failed")], True, "[]", {"a"},
     [EventKind.TRANSITION], ["a"], [], ["a"]),
    ({"a": tracked("a")}, [status("a")], True, "[]", set(), [], [], [], []),
    # A finished job past `retain` is forgotten, unless the config names it in `ids`.
    ({"a": tracked("a", "succeeded", finished=T0 - timedelta(days=2))}, [], True, "[]", set(),
     [], [], ["a"], []),
    ({"a": tracked("a", "succeeded", finished=T0 - timedelta(days=2))}, [], True, '["a"]',
     set(), [], [], [], []),
]


@pytest.mark.parametrize(
    ("known", "observed", "complete", "ids", "watches", "kinds", "upserted", "removed",
     "finished"), DETECT_JOBS)
async def test_detect_fills_events_and_job_records(
    tmp_path: Path, known: dict[str, TrackedJob], observed: list[JobStatus], complete: bool,
    ids: str, watches: set[str], kinds: list[EventKind], upserted: list[str],
    removed: list[str], finished: list[str],
) -> None:
    chain = stages_for(make_config(tmp_path, ids=ids))
    ctx = Context(source="zen", now=T0, jobs=known, health=UP, watches=watches)
    out = await run(chain, "detect", ctx,
                    Batch(poll=PollResult(observations=observed, complete=complete)))
    assert [e.on for e in out.events] == kinds
    assert [j.id for j in out.upserts] == upserted
    assert list(out.removals) == removed
    assert list(out.finished_watches) == finished


# --- repeat ----------------------------------------------------------------------------------

REPEAT = [
    # (job, marks, minutes after T0, reminders as (rule, job id))
    (tracked(state="failed"), [mark("failed")], 61, [("failed", "j1")]),
    (tracked(state="failed"), [mark("failed")], 59, []),
    # The job moved on since it was notified: nothing to remind about.
    (tracked(state="running"), [mark("failed")], 61, []),
    (tracked(state="running", stalled=True), [mark("stalled", state="running")], 31,
     [("stalled", "j1")]),
    (tracked(state="running"), [mark("stalled", state="running")], 31, []),
    # A mark of a rule without `repeat` (throttle only) never reminds.
    (tracked(state="succeeded"), [mark("succeeded", state="succeeded")], 600, []),
    (tracked(state="failed"), [], 600, []),
    (tracked("j2", "failed"), [mark("failed", job_id="j2"), mark("failed", job_id="j1")], 61,
     [("failed", "j2")]),
]


@pytest.mark.parametrize(("job", "memory", "minutes", "expected"), REPEAT)
async def test_repeat_reminds_while_the_job_stays_as_notified(
    tmp_path: Path, job: TrackedJob, memory: list[RuleMark], minutes: int,
    expected: list[tuple[str, str]],
) -> None:
    chain = stages_for(make_config(tmp_path))
    ctx = Context(source="zen", now=T0 + timedelta(minutes=minutes), jobs={job.id: job},
                  marks=marks(*memory))
    out = await run(chain, "repeat", ctx, Batch(poll=PollResult(observations=())))
    assert [(e.repeat_of, e.job.id if e.job else None) for e in out.events] == expected
    assert all(e.on is EventKind(_rule_on(e.repeat_of)) for e in out.events)


def _rule_on(rule: str | None) -> str:
    return {"failed": "transition", "stalled": "stalled"}[rule or ""]


async def test_repeat_sees_the_jobs_as_this_batch_leaves_them(tmp_path: Path) -> None:
    chain = stages_for(make_config(tmp_path))
    now = T0 + timedelta(hours=2)
    ctx = Context(source="zen", now=now, jobs={"j1": tracked(state="failed")},
                  marks=marks(mark("failed")))
    poll = PollResult(observations=())
    moved = Batch(poll=poll, upserts=(tracked(state="running", version=2),))
    assert (await run(chain, "repeat", ctx, moved)).events == ()
    removed = Batch(poll=poll, removals=("j1",))
    assert (await run(chain, "repeat", ctx, removed)).events == ()
    # A failed poll observed nothing: no reminders either.
    failed = Batch(error=SourceUnavailable("HTTP 503"))
    assert (await run(chain, "repeat", ctx, failed)).events == ()


def test_a_reminder_id_comes_from_the_rule_job_version_and_mark_never_from_now(
    tmp_path: Path,
) -> None:
    rule = make_config(tmp_path).rules[0]
    job, notified = tracked(state="failed"), mark("failed")
    first = reminder(rule, job, notified, T0 + timedelta(hours=1))
    assert reminder(rule, job, notified, T0 + timedelta(hours=3)).id == first.id
    later = replace(notified, notified_at=T0 + timedelta(hours=1))
    assert reminder(rule, job, later, T0 + timedelta(hours=3)).id != first.id
    assert reminder(rule, replace(job, version=2), notified, T0).id != first.id


# --- route -----------------------------------------------------------------------------------

ROUTE = [
    # (events, marks, matched (rule, event id), skipped (rule, outcome))
    ([transition("failed")], [], [("failed", "e1")], []),
    ([transition("succeeded")], [], [("succeeded", "e1")], [("failed", Outcome.FILTERED)]),
    ([transition("failed")], [mark("failed", at=T0 - timedelta(minutes=5))], [],
     [("failed", Outcome.THROTTLED)]),
    ([transition("failed")], [mark("failed", at=T0 - timedelta(minutes=11))],
     [("failed", "e1")], []),
    # A mark made earlier in the batch throttles the next event about the same job.
    ([transition("failed"), transition("failed", event_id="e2")], [], [("failed", "e1")],
     [("failed", Outcome.THROTTLED)]),
    ([transition("failed"), transition("failed", job_id="j2", event_id="e2")], [],
     [("failed", "e1"), ("failed", "e2")], []),
    ([transition("cancelled")], [], [],
     [("failed", Outcome.FILTERED), ("succeeded", Outcome.FILTERED)]),
]


@pytest.mark.parametrize(("events", "memory", "matched", "skipped"), ROUTE)
async def test_route_picks_the_rules_and_names_why_the_others_did_not(
    tmp_path: Path, events: list[Event], memory: list[RuleMark],
    matched: list[tuple[str, str]], skipped: list[tuple[str, Outcome]],
) -> None:
    chain = stages_for(make_config(tmp_path))
    ctx = Context(source="zen", now=T0, marks=marks(*memory))
    out = await run(chain, "route", ctx, Batch(events=tuple(events)))
    assert [(m.rule.name, m.event.id) for m in out.matches] == matched
    assert [(s.decision.rule.name, s.decision.outcome) for s in out.skipped] == skipped


async def test_route_leaves_a_mark_only_for_rules_with_throttle_or_repeat(
    tmp_path: Path,
) -> None:
    chain = stages_for(make_config(tmp_path))
    ctx = Context(source="zen", now=T0)
    out = await run(chain, "route", ctx,
                    Batch(events=(transition("failed"), transition("succeeded", job_id="j2"))))
    assert [(m.rule.name, m.mark is not None) for m in out.matches] == [
        ("failed", True), ("succeeded", False)]


# --- render ----------------------------------------------------------------------------------

RENDER = [
    # (rule, event, notifications as (rule, sink), failures as (rule, sink), marks)
    ("failed", transition("failed"), [("failed", "hook")], [], 1),
    ("succeeded", transition("succeeded"), [("succeeded", "hook"), ("succeeded", "hook2")],
     [], 0),
    # A broken template is a failure, and its sink gets the bundled template's message.
    ("broken", Event(id="p", on=EventKind.PROGRESS, source="zen", at=T0, job=status()),
     [("broken", "hook")], [("broken", "hook")], 1),
]


@pytest.mark.parametrize(("rule_name", "event", "sent", "failed", "marked"), RENDER)
async def test_render_makes_one_notification_per_sink_and_isolates_broken_templates(
    tmp_path: Path, rule_name: str, event: Event, sent: list[tuple[str, str]],
    failed: list[tuple[str, str]], marked: int,
) -> None:
    config = make_config(tmp_path)
    rule = next(r for r in config.rules if r.name == rule_name)
    memo = mark(rule_name) if rule.throttle or rule.repeat else None
    out = await run(stages_for(config), "render", Context(source="zen", now=T0),
                    Batch(matches=(Match(event=event, rule=rule, mark=memo),)))
    assert [(n.rule, n.sink) for n in out.notifications] == sent
    assert all(n.event_id == event.id and n.payload.get("text") for n in out.notifications)
    assert [(f.rule, f.sink) for f in out.failures] == failed
    assert all("nope" in f.error and f.sent_default for f in out.failures)
    assert len(out.marks) == marked


# --- enqueue ---------------------------------------------------------------------------------


async def test_enqueue_commits_the_batch_in_one_go(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with opened(f"sqlite:///{tmp_path / 'state.db'}") as store:
        chain = build_stages(config, *_parts(config), store=store)
        memory = Memory(["zen"])
        batch = await chain.run(memory.context("zen", T0),
                                Batch(poll=PollResult(observations=[status("j1")])))
        memory.apply("zen", batch)
        later = memory.context("zen", T0 + timedelta(minutes=1))
        batch = await chain.run(later, Batch(poll=PollResult(
            observations=[status("j1", "failed")])))
        memory.apply("zen", batch)
        assert [n.rule for n in batch.notifications] == ["failed"]
        jobs = await store.load_jobs("zen")
        assert jobs["j1"].status.state is JobState.FAILED
        assert jobs == memory.sources["zen"].jobs
        assert [(m.rule, m.job_id) for m in await store.load_rule_marks()] == [("failed", "j1")]
        health = await store.load_health("zen")
        assert health is not None and health.up


# --- memory ----------------------------------------------------------------------------------


def test_the_memory_keeps_the_unfinished_ids_as_jobs_finish_vanish_and_run_again() -> None:
    # A list poll looks these up by id (Pipeline.ids_to_poll) without walking every job.
    memory = Memory(["zen"])
    state = memory.sources["zen"]
    state.load({"a": tracked("a"), "b": tracked("b", "succeeded", finished=T0),
                "c": tracked("c")})
    assert list(state.unfinished) == ["a", "c"]
    memory.apply("zen", Batch(upserts=(tracked("a", "failed", finished=T0), tracked("d")),
                              removals=("c",)))
    assert list(state.unfinished) == ["d"]
    memory.apply("zen", Batch(upserts=(tracked("b", "running"), tracked("d", "running"))))
    assert list(state.unfinished) == ["d", "b"]
    assert set(state.unfinished) == {i for i, job in state.jobs.items() if not job.done}
