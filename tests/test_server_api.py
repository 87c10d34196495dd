"""The JSON API, probes and /metrics over a real socket, with the real SQLite store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import Metrics
from bridge.model import DeliveryStatus
from tests.server_support import (
    ADMIN_TOKEN,
    ESALES_ID,
    QUEUED_AGO,
    SECRETS,
    SOURCE_TOKEN,
    admin,
    harness,
)

# --- probes and metrics ----------------------------------------------------------------------


async def test_healthz_answers_ok(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False, ready=False) as h:
        reply = await h.get("/healthz")
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}


async def test_readyz_is_200_when_store_answers_and_bridge_runs(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/readyz")
    assert reply.status == 200
    assert reply.json()["status"] == "ready"


async def test_readyz_is_503_with_reason_before_the_scheduler_runs(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False, ready=False) as h:
        reply = await h.get("/readyz")
    assert reply.status == 503
    assert any("scheduler" in reason for reason in reply.json()["reasons"])


async def test_metrics_parse_as_prometheus_text_with_every_series(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        reply = await h.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    served = {family.name for family in text_string_to_metric_families(reply.text)}
    expected = {family.name for family in Metrics().registry.collect()}
    assert expected <= served


async def test_metrics_refresh_outbox_gauges_from_the_store(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        reply = await h.get("/metrics")
    samples = {s.name: s.value for f in text_string_to_metric_families(reply.text)
               for s in f.samples}
    assert samples["bridge_outbox_pending"] == 1
    assert samples["bridge_outbox_dead"] == 1
    # Seeded ten minutes ago; the test itself takes seconds.
    age = samples["bridge_outbox_oldest_pending_age_seconds"]
    assert QUEUED_AGO.total_seconds() <= age < QUEUED_AGO.total_seconds() + 120


# --- read views ------------------------------------------------------------------------------


async def test_jobs_lists_tracked_jobs_with_their_state(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        jobs = (await h.get("/v1/jobs")).json()["jobs"]
    by_id = {job["id"]: job for job in jobs}
    assert set(by_id) == {"job-running", "job-failed"}
    running = by_id["job-running"]
    assert running["source"] == "zd"
    assert running["state"] == "running"
    assert running["raw_state"] == "working"
    assert running["progress"] == 40.0
    assert running["run"] == 1
    assert running["duration"] >= 9 * 60
    assert running["first_seen"]


async def test_jobs_filter_by_source_and_state(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        failed = (await h.get("/v1/jobs?source=zd&state=failed")).json()["jobs"]
        other = (await h.get("/v1/jobs?source=imports")).json()["jobs"]
    assert [job["id"] for job in failed] == ["job-failed"]
    assert other == []


async def test_jobs_refuse_an_unknown_state_naming_the_choices(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/v1/jobs?state=exploded")
    assert reply.status == 400
    assert "succeeded" in reply.json()["error"]


async def test_events_are_newest_first_and_page_with_next(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        first = (await h.get("/v1/events?limit=1")).json()
        second = (await h.get(f"/v1/events?limit=1&before={first['next']}")).json()
        everything = (await h.get("/v1/events")).json()
    assert [e["id"] for e in first["events"]] == [h.seeded.event_ids[1]]
    assert first["events"][0]["on"] == "transition"
    assert first["events"][0]["to"] == "failed"
    assert [e["id"] for e in second["events"]] == [h.seeded.event_ids[0]]
    assert second["next"] is None
    assert len(everything["events"]) == 2
    assert everything["next"] is None


async def test_each_event_carries_its_seq_the_cursor_before_and_next_take(
        tmp_path: Path) -> None:
    # An extension (README "HTTP API", docs/extensions.md): `seq` grows with each stored
    # event, `next` is the last item's `seq`, and `before=SEQ` lists only older events, so a
    # consumer can page from any item it already holds, not only from a `next`.
    async with harness(tmp_path) as h:
        everything = (await h.get("/v1/events")).json()["events"]
        newest, oldest = (e["seq"] for e in everything)
        page = (await h.get("/v1/events?limit=1")).json()
        older = (await h.get(f"/v1/events?before={newest}")).json()
        none_older = (await h.get(f"/v1/events?before={oldest}")).json()
    assert isinstance(newest, int)
    assert newest > oldest
    assert page["next"] == page["events"][0]["seq"] == newest
    assert [e["seq"] for e in older["events"]] == [oldest]
    assert older["next"] is None
    assert none_older == {"events": [], "next": None}


async def test_events_refuse_a_bad_limit(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/v1/events?limit=lots")
    assert reply.status == 400


async def test_outbox_shows_deliveries_without_their_payload(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        body = (await h.get("/v1/outbox?status=dead")).json()
    [dead] = body["deliveries"]
    assert dead["id"] == h.seeded.dead_id
    assert dead["sink"] == "pager"
    assert dead["rule"] == "job-failed"
    assert dead["source"] == "zd"
    assert dead["job_id"] == "job-failed"
    assert dead["status"] == "dead"
    assert dead["attempts"] == 1
    assert dead["last_error"] == "HTTP 400: bad request"
    assert QUEUED_AGO.total_seconds() <= dead["age"] < QUEUED_AGO.total_seconds() + 120
    assert dead["text"] == "job-failed failed"
    assert "payload" not in dead
    assert body["stats"]["dead"] == 1
    assert body["stats"]["pending"] == 1


async def test_outbox_refuses_an_unknown_status(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/v1/outbox?status=lost")
    assert reply.status == 400


async def test_sources_show_kind_timing_and_whether_they_accept_pushes(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        sources = {s["name"]: s for s in (await h.get("/v1/sources")).json()["sources"]}
    assert sources["zd"]["kind"] == "zendesk"
    assert sources["zd"]["interval"] == 30
    assert sources["hooks"]["accepts_push"] is True
    assert sources["syncs"]["accepts_push"] is True
    assert sources["quiet"]["accepts_push"] is False
    assert sources["hooks"]["interval"] is None


# --- watches -------------------------------------------------------------------------------


async def test_watch_answers_201_when_new_and_200_when_already_tracked(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        first = await h.post("/v1/watches", json={"source": "imports", "id": ESALES_ID})
        again = await h.post("/v1/watches", json={"source": "imports", "id": ESALES_ID})
        watched = await h.bridge.store.list_watches("imports")
    assert first.status == 201
    assert again.status == 200
    assert watched == [ESALES_ID]


async def test_watch_keeps_a_numeric_id_as_text(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/watches", json={"source": "imports", "id": int(ESALES_ID)})
    assert reply.status == 201
    assert reply.json()["id"] == ESALES_ID


async def test_watch_of_an_unknown_source_is_404(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/watches", json={"source": "nope", "id": "1"})
    assert reply.status == 404
    assert "nope" in reply.json()["error"]


@pytest.mark.parametrize("body", [{"source": "imports"}, {"id": "1"}, ["imports", "1"],
                                  {"source": "imports", "id": True}])
async def test_watch_with_a_bad_body_is_400(tmp_path: Path, body: object) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/watches", json=body)
    assert reply.status == 400


async def test_a_browser_write_needs_a_json_content_type(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/watches", data='{"source": "imports", "id": "1"}',
                             headers={"Content-Type": "text/plain",
                                      "Sec-Fetch-Site": "cross-site"})
    assert reply.status == 415


async def test_a_script_may_post_json_labelled_as_a_form_as_curl_d_does(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/watches", data=f'{{"source": "imports", "id": "{ESALES_ID}"}}',
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 201


async def test_unwatch_removes_a_watch_then_answers_404(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        await h.post("/v1/watches", json={"source": "imports", "id": ESALES_ID})
        removed = await h.call("DELETE", f"/v1/watches/imports/{ESALES_ID}")
        again = await h.call("DELETE", f"/v1/watches/imports/{ESALES_ID}")
        watched = await h.bridge.store.list_watches("imports")
    assert removed.status == 200
    assert again.status == 404
    assert watched == []


# --- outbox actions -----------------------------------------------------------------------------


async def test_retry_requeues_a_dead_delivery_which_the_sink_then_receives(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        before = await h.outbox_status(h.seeded.dead_id)
        reply = await h.post(f"/v1/outbox/{h.seeded.dead_id}/retry")
        await h.wait_until_delivered(h.seeded.dead_id)
    assert before is DeliveryStatus.DEAD
    assert reply.status == 200
    assert reply.json() == {"retried": 1}


async def test_retry_of_an_unknown_delivery_is_404(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        reply = await h.post("/v1/outbox/msg_nope/retry")
    assert reply.status == 404


async def test_drop_discards_a_delivery(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        reply = await h.post(f"/v1/outbox/{h.seeded.dead_id}/drop")
        status = await h.outbox_status(h.seeded.dead_id)
    assert reply.status == 200
    assert status is None


async def test_retry_all_requeues_every_dead_delivery(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        reply = await h.post("/v1/outbox/retry")
        dead = (await h.get("/v1/outbox?status=dead")).json()["deliveries"]
    assert reply.json() == {"retried": 1}
    assert dead == []


# --- who may write ---------------------------------------------------------------------------

WRITES = [
    ("POST", "/v1/watches", {"json": {"source": "imports", "id": "1"}}),
    ("DELETE", "/v1/watches/imports/1", {}),
    ("POST", "/v1/outbox/retry", {}),
    ("POST", "/v1/outbox/msg_x/retry", {}),
    ("POST", "/v1/outbox/msg_x/drop", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
async def test_write_without_the_token_is_401(
    tmp_path: Path, method: str, path: str, kwargs: dict[str, object]
) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN, with_rows=False) as h:
        missing = await h.call(method, path, **kwargs)
        wrong = await h.call(method, path, headers=admin("not-the-token"), **kwargs)
    assert missing.status == 401
    assert wrong.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "BRIDGE_ADMIN_TOKEN" in missing.json()["error"]


async def test_write_with_the_token_is_allowed(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN, with_rows=False) as h:
        reply = await h.post("/v1/watches", json={"source": "imports", "id": "1"},
                             headers=admin())
    assert reply.status == 201


async def test_reads_need_no_token(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN, with_rows=False) as h:
        reply = await h.get("/v1/jobs")
    assert reply.status == 200


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
async def test_writes_are_refused_on_a_public_listen_address_without_a_token(
    tmp_path: Path, method: str, path: str, kwargs: dict[str, object]
) -> None:
    async with harness(tmp_path, listen="0.0.0.0:8080", with_rows=False) as h:
        reply = await h.call(method, path, **kwargs)
        read = await h.get("/v1/jobs")
    assert reply.status == 403
    assert "BRIDGE_ADMIN_TOKEN" in reply.json()["error"]
    assert read.status == 200


async def test_open_loopback_writes_refuse_a_foreign_host_header(tmp_path: Path) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own host name.
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/outbox/retry", headers={"Host": "attacker.example:8080"})
    assert reply.status == 403


async def test_writes_refuse_a_cross_origin_browser_request(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/outbox/retry", headers={"Origin": "https://attacker.example"})
    assert reply.status == 403


async def test_same_origin_browser_request_is_allowed(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/outbox/retry", headers={"Origin": h.url})
    assert reply.status == 200


async def test_oversized_body_is_413(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/watches", data=io.BytesIO(b"x" * (1024 * 1024 + 10)),
                             headers={"Content-Type": "application/json"})
    assert reply.status == 413
    assert "too large" in reply.json()["error"]


async def test_unknown_route_is_a_json_404(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/v1/nothing")
    assert reply.status == 404
    assert reply.json() == {"error": "Not Found"}


async def test_no_configured_secret_appears_in_any_response(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN) as h:
        replies = [await h.get(path) for path in (
            "/", "/ui/live", "/healthz", "/readyz", "/metrics", "/v1/jobs", "/v1/events",
            "/v1/outbox", "/v1/sources", "/static/dashboard.css", "/nothing",
        )]
        replies.append(await h.post("/v1/outbox/retry", headers=admin("wrong")))
        replies.append(await h.post("/v1/events/quiet", data=b"{}"))
        replies.append(await h.post("/v1/events/hooks", data=b"{}"))
    for reply in replies:
        for secret in SECRETS:
            assert secret not in reply.text
            assert all(secret not in value for value in reply.headers.values())


async def test_a_secret_that_leaked_into_stored_data_is_masked(tmp_path: Path) -> None:
    # e.g. an upstream error message echoing our credential back into a job's message
    async with harness(tmp_path, with_rows=False) as h:
        h.upstream.zendesk.add_job("j", status="failed", message=f"401 for token {SOURCE_TOKEN}")
        await h.poll("zd")
        reply = await h.get("/v1/jobs")
    assert SOURCE_TOKEN not in reply.text
    assert reply.json()["jobs"][0]["message"] == "401 for token ***"


async def test_metrics_show_each_polled_source_and_sink_at_zero_before_any_failure(
        tmp_path: Path) -> None:
    # The contract promises poll errors per source and failures per sink: a dashboard or an
    # alert on `bridge_poll_errors_total{source="syncs"}` must find the series at 0.
    async with harness(tmp_path) as h:
        reply = await h.get("/metrics")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(reply.text) for s in f.samples}
    for source in ("zd", "imports", "syncs"):
        assert samples[("bridge_poll_errors_total", (("source", source),))] == 0
    assert ("bridge_poll_errors_total", (("source", "hooks"),)) not in samples  # push: not polled
    for name in ("bridge_delivery_failures_total", "bridge_dead_letters_total"):
        assert samples[(name, (("sink", "pager"),))] == 0
