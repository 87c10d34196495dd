"""The webhook event catalog: schemas from the models, real examples, the docs page, the CLI
and the HTTP routes (over a real socket, through the real app)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from standardwebhooks.webhooks import Webhook

from bridge.checks import FIXED_NOW, sample_event
from bridge.checks.samples import sample_group
from bridge.config.schema import BridgeSettings, Config, Rule
from bridge.groups.digest import Digests
from bridge.model import EventKind, JobState
from bridge.render import Renderer, envelope, envelope_json
from bridge.resources import bundled_templates
from bridge.signing import decode_secret, verify
from bridge.simulators.webhook_receiver import WebhookReceiver
from bridge.webhooks import catalog
from bridge.webhooks.docs import REGENERATE, markdown
from bridge.webhooks.examples import (
    CATALOG_JOB_NAME,
    EXAMPLE_SECRET,
    catalog_examples,
    example_sink,
    render_examples,
    signed_request,
)
from tests.cli_support import run_cli
from tests.schema_check import SchemaCheck, problems_of
from tests.server_support import harness

DOCS = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"
TYPES = [*(f"job.{kind}" for kind in EventKind), "job.group", "silence.reminder"]


# --- the catalog and its schemas -------------------------------------------------------------


def test_every_event_kind_has_a_catalog_entry() -> None:
    # And a group's digest (a rule with group_by), one POST per flush.
    assert [entry.name for entry in catalog.ENTRIES] == [
        "job.appeared", "job.transition", "job.progress", "job.stalled", "job.vanished",
        "job.source_down", "job.source_up", "job.group", "silence.reminder"]
    assert set(catalog.CATALOG) == set(TYPES)


@pytest.mark.parametrize("name", TYPES)
def test_each_schema_is_valid_draft_2020_12_with_its_type_constant(name: str) -> None:
    schema = catalog.json_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"]["const"] == name
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("example", [*render_examples(example_sink()), *catalog_examples()],
                         ids=lambda e: e.entry.name)
def test_the_real_example_of_each_type_validates(example: Any) -> None:
    assert example.error is None
    body = json.loads(example.body)
    assert body["type"] == example.entry.name
    assert problems_of(body) == []
    assert body["data"]["schema_version"] == catalog.SCHEMA_VERSION


@pytest.mark.parametrize("example", catalog_examples(), ids=lambda e: e.entry.name)
def test_the_catalog_examples_carry_the_jtl_sync_name_as_job_name(example: Any) -> None:
    data = json.loads(example.body)["data"]
    if example.entry.name == "silence.reminder":
        assert [s["silenced"] for s in data["silences"]] == [14, 0]  # about no job
    elif example.entry.name == "job.group":
        assert [j["job"]["name"] for j in data["jobs"]] == [CATALOG_JOB_NAME, None, None]
        assert data["events"][0]["job"]["name"] == CATALOG_JOB_NAME
    elif data["job"] is not None:
        assert data["job"]["name"] == CATALOG_JOB_NAME
        assert CATALOG_JOB_NAME in data["text"]


def test_job_name_is_in_the_schema_and_null_when_the_api_names_no_job() -> None:
    job = catalog.json_schema("job.transition")["$defs"]["Job"]
    assert "name" in job["required"]
    assert {t.get("type") for t in job["properties"]["name"]["anyOf"]} == {"string", "null"}
    body = envelope(sample_event(EventKind.TRANSITION), "job-failed", "rendered")
    assert body["data"]["job"]["name"] is None
    assert problems_of(body) == []
    unnamed = json.loads(json.dumps(body))
    del unnamed["data"]["job"]["name"]
    assert any("name" in p for p in problems_of(unnamed))


def test_the_envelope_keeps_every_key_of_contract_section_6() -> None:
    body = envelope(sample_event(EventKind.TRANSITION), "job-failed", "rendered")
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "job.transition"
    assert body["timestamp"] == "2026-11-23T10:00:00Z"
    data = body["data"]
    assert {"event_id", "rule", "source", "from", "to", "text", "job"} <= set(data)
    assert (data["rule"], data["from"], data["to"], data["text"]) == (
        "job-failed", "running", "failed", "rendered")
    assert {"id", "state", "raw_state", "progress", "message", "url", "fields"} <= set(
        data["job"])
    assert data["schema_version"] == "2"


@pytest.mark.parametrize("kind", list(EventKind))
def test_the_json_sent_is_the_envelope_written_compactly(kind: EventKind) -> None:
    # The body is written by the model in one step (bridge.render.envelope_json): the same
    # keys, order and values as the envelope, compact, non-ASCII kept as is.
    event = replace(sample_event(kind), reason="café ☕") if kind is EventKind.STALLED \
        else sample_event(kind)
    text = envelope_json(event, "rule-1", "naïve \"text\"\n")
    assert text == json.dumps(envelope(event, "rule-1", "naïve \"text\"\n"),
                              ensure_ascii=False, separators=(",", ":"))


def test_a_body_the_schema_does_not_describe_is_caught() -> None:
    body = envelope(sample_event(EventKind.TRANSITION), "job-failed", "rendered")
    assert problems_of(body) == []
    added = json.loads(json.dumps(body))
    added["data"]["severity"] = "high"
    assert any("severity" in p for p in problems_of(added))
    dropped = json.loads(json.dumps(body))
    del dropped["data"]["schema_version"]
    assert any("schema_version" in p for p in problems_of(dropped))
    retyped = json.loads(json.dumps(body))
    retyped["data"]["job"]["progress"] = "40%"
    assert any("progress" in p for p in problems_of(retyped))
    assert problems_of({**body, "type": "job.exploded"}) == [
        "type 'job.exploded' is not in the webhook catalog"]


async def test_the_receiver_check_records_a_bad_body_without_changing_its_answer() -> None:
    check = SchemaCheck()
    good = json.dumps(envelope(sample_event(EventKind.STALLED), "slow", "stuck"))
    bad = json.dumps({"type": "job.stalled", "data": {}})
    async with WebhookReceiver(check=check) as hook, aiohttp.ClientSession() as session:
        for body in (good, bad, '{"routing_key": "pagerduty, not ours"}'):
            async with session.post(hook.url, data=body) as response:
                assert response.status == 200
    assert check.validated == ["job.stalled"]
    assert check.problems and all(p.startswith("job.stalled") for p in check.problems)
    assert len(hook.problems) == 1


def test_an_event_that_does_not_fit_its_type_is_an_envelope_error() -> None:
    down = sample_event(EventKind.SOURCE_DOWN)
    with pytest.raises(catalog.EnvelopeError, match=r"bridge schema job\.source_down"):
        envelope(replace(down, reason=None), "down", "text")
    with pytest.raises(catalog.EnvelopeError, match=r"data\.job"):
        envelope(replace(sample_event(EventKind.TRANSITION), job=None), "failed", "text")


def test_detection_bookkeeping_on_a_job_stays_out_of_the_body() -> None:
    # JTL jobs carry run_key and due_at: their default bodies failed validation and every
    # JTL notification to a webhook with the default body was dropped (found by `make soak`).
    event = sample_event(EventKind.TRANSITION)
    assert event.job is not None
    jtl_job = replace(event.job, run_key="2026-11-23T10:00:00Z",
                      due_at=datetime(2026, 11, 23, 11, tzinfo=UTC))
    body = envelope(replace(event, job=jtl_job), "job-failed", "failed")
    assert "run_key" not in body["data"]["job"] and "due_at" not in body["data"]["job"]
    assert problems_of(body) == []


def test_a_repeat_reminder_of_a_transition_has_no_from_and_validates() -> None:
    reminder = replace(sample_event(EventKind.TRANSITION), from_state=None,
                       to_state=JobState.FAILED, repeat_of="job-failed",
                       reason="repeat: still failed")
    body = envelope(reminder, "job-failed", "still failed")
    assert body["data"]["from"] is None
    assert problems_of(body) == []


def test_lookup_takes_the_type_or_the_rule_kind_and_names_the_types_when_unknown() -> None:
    assert catalog.lookup("transition") is catalog.lookup("job.transition")
    with pytest.raises(catalog.UnknownEventType, match=r"job\.appeared, job\.transition"):
        catalog.lookup("job.exploded")


# --- docs/webhooks.md -------------------------------------------------------------------------


def test_docs_webhooks_md_is_current() -> None:
    assert DOCS.read_text(encoding="utf-8") == markdown(), (
        f"docs/webhooks.md is stale: run `{REGENERATE}` and commit it")


def test_the_docs_show_every_type_with_its_example_and_schema() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in TYPES:
        assert f"### {name}\n" in text
        assert json.dumps(catalog.json_schema(name), indent=2, ensure_ascii=False) in text
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert f"`{header}`" in text
    assert "schema_version" in text and "5 s, 5 min, 30 min" in text


def test_the_signed_request_in_the_docs_verifies_with_standardwebhooks() -> None:
    [example] = [e for e in catalog_examples() if e.entry.name == "job.transition"]
    headers, body = signed_request(example)
    text = DOCS.read_text(encoding="utf-8")
    assert f"webhook-signature: {headers['webhook-signature']}\n\n{body}\n" in text
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    assert Webhook(EXAMPLE_SECRET).sign(headers["webhook-id"], sent_at, body) == \
        headers["webhook-signature"]
    verify(decode_secret(EXAMPLE_SECRET), headers, body.encode(), now=sent_at)


def test_the_python_check_snippet_in_the_docs_runs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    [check] = [s for s in snippets if "webhook.sign(" in s]
    exec(compile(check, "docs/webhooks.md", "exec"), {})  # raises if the assert fails


# --- bridge schema ----------------------------------------------------------------------------


def test_bridge_schema_lists_every_type_with_a_summary() -> None:
    code, out, _ = run_cli("schema")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [e.name for e in catalog.ENTRIES]
    assert all(len(line.split()) > 3 for line in lines)


def test_bridge_schema_type_prints_that_schema_as_json() -> None:
    code, out, _ = run_cli("schema", "job.vanished")
    assert code == 0
    assert json.loads(out) == catalog.json_schema("job.vanished")


def test_bridge_schema_unknown_type_exits_1_naming_the_types() -> None:
    code, out, err = run_cli("schema", "job.exploded")
    assert code == 1 and out == ""
    assert "no event type 'job.exploded'" in err and "job.source_up" in err


def test_bridge_schema_markdown_prints_the_docs_page() -> None:
    code, out, _ = run_cli("schema", "--markdown")
    assert code == 0
    assert out == DOCS.read_text(encoding="utf-8")


# --- GET /v1/schema ---------------------------------------------------------------------------


async def test_v1_schema_lists_the_catalog_and_serves_each_schema(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False, ready=False) as h:
        listing = await h.get("/v1/schema")
        assert listing.status == 200
        data = listing.json()
        assert data["schema_version"] == catalog.SCHEMA_VERSION
        assert [t["type"] for t in data["types"]] == [e.name for e in catalog.ENTRIES]
        for entry in data["types"]:
            reply = await h.get(entry["schema"])
            assert reply.status == 200
            assert reply.json() == catalog.json_schema(entry["type"])
        missing = await h.get("/v1/schema/job.exploded")
    assert missing.status == 404
    assert "no event type 'job.exploded'" in missing.json()["error"]
    assert "GET /v1/schema" in missing.json()["error"]


def test_a_group_body_of_jtl_jobs_keeps_their_bookkeeping_out_and_their_name_in() -> None:
    # A group's `jobs[].job` went out as the whole JobStatus: a JTL job's run_key made its
    # digest fail validation (dropped) where a single event's body did not.
    sink = example_sink()
    rule = Rule.model_validate({"name": "failures", "on": "transition",
                                "template": "transition.slack.j2", "notify": [sink.name],
                                "group_by": ["source"]})
    config = Config(bridge=BridgeSettings(templates=str(bundled_templates())), sinks=[sink],
                    rules=[rule])
    group = sample_group(rule, source="jtl")
    jtl = [replace(g, event=replace(g.event, job=replace(
        g.event.job, run_key="2026-11-23T10:00:00Z", name=f"Otto: sync {i}")))
        for i, g in enumerate(group.events) if g.event.job is not None]
    rendered = Digests(config, Renderer(config, strict=False)).render(
        replace(group, events=jtl), FIXED_NOW)
    assert rendered.failures == []
    body = json.loads(rendered.notifications[0].payload["body"])
    assert problems_of(body) == []
    assert [j["job"]["name"] for j in body["data"]["jobs"]] == [
        "Otto: sync 0", "Otto: sync 1", "Otto: sync 2"]
    assert all("run_key" not in j["job"] for j in body["data"]["jobs"])
