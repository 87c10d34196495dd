"""The dashboard's HTML and its forms, over a real socket with the real SQLite store."""

from __future__ import annotations

import re
from pathlib import Path

from markupsafe import escape

from bridge.model import DeliveryStatus
from tests.server_support import ADMIN_TOKEN, harness


def _section(html: str, section_id: str) -> str:
    match = re.search(rf'<section class="card" id="{section_id}">(.*?)</section>', html, re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


async def test_page_lists_sources_with_their_health(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.fail_polls_of_imports(3)
        reason = h.health("imports").reason
        reply = await h.get("/")
    sources = _section(reply.text, "sources")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    for name in ("zd", "imports", "hooks", "syncs", "quiet"):
        assert f'data-source="{name}"' in sources
    assert reason and "404" in reason
    assert str(escape(reason)) in sources  # as Jinja escapes it
    assert "3 failed polls" in sources


async def test_page_shows_jobs_with_state_badges_and_progress(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        jobs = _section((await h.get("/")).text, "jobs")
    assert 'data-job="zd/job-running"' in jobs
    assert '<span class="badge state-running"' in jobs
    assert '<span class="badge state-failed"' in jobs
    assert 'max="100" value="40.0"' in jobs
    assert "Printer on fire" in jobs


async def test_jobs_filter_by_state_from_the_query(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        jobs = _section((await h.get("/?state=failed")).text, "jobs")
    assert 'data-job="zd/job-failed"' in jobs
    assert "job-running" not in jobs
    assert '<option value="failed" selected>' in jobs


async def test_jobs_filter_by_source_from_the_query(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        jobs = _section((await h.get("/?source=imports")).text, "jobs")
    assert "data-job=" not in jobs
    assert "match these filters" in jobs


async def test_page_shows_recent_events_and_outbox(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        html = (await h.get("/")).text
    events = _section(html, "events")
    outbox = _section(html, "outbox")
    assert '<span class="badge on-transition">transition</span>' in events
    assert '<span class="badge on-appeared">appeared</span>' in events
    assert f'data-delivery="{h.seeded.dead_id}"' in outbox
    assert f'action="/ui/outbox/{h.seeded.dead_id}/retry"' in outbox
    assert "HTTP 400: bad request" in outbox
    assert f'data-delivery="{h.seeded.pending_id}"' in outbox


async def test_header_shows_readiness_and_outbox_counts(tmp_path: Path) -> None:
    async with harness(tmp_path, ready=False) as h:
        html = (await h.get("/")).text
    assert "Not ready" in html
    assert re.search(r'id="pending-count">\s*<b>1</b> pending', html)
    assert re.search(r'id="dead-count">\s*<b>1</b> dead', html)


async def test_live_fragment_is_the_page_body_without_the_layout(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        reply = await h.get("/ui/live?state=failed")
    assert reply.status == 200
    assert "<html" not in reply.text
    assert 'data-job="zd/job-failed"' in reply.text
    assert "job-running" not in _section(reply.text, "jobs")


async def test_page_script_runs_only_with_the_nonce_of_its_policy(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/")
    policy = reply.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce
    assert f'<script nonce="{nonce.group(1)}">' in reply.text
    assert "default-src 'none'" in policy


async def test_retry_form_requeues_a_dead_letter_and_redirects_back(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/retry",
                             data={"back": "/?state=failed"})
        await h.wait_until_delivered(h.seeded.dead_id)
    assert reply.status == 303
    assert reply.headers["Location"] == "/?state=failed&notice=retried&n=1"


async def test_retry_notice_is_shown_after_the_redirect(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        html = (await h.get("/?notice=retried&n=1")).text
    assert "Re-queued 1 delivery." in html


async def test_drop_form_discards_a_dead_letter(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/drop", data={"back": "/"})
        status = await h.outbox_status(h.seeded.dead_id)
    assert reply.status == 303
    assert status is None


async def test_retry_all_form_requeues_every_dead_letter(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        reply = await h.post("/ui/outbox/retry", data={"back": "/"})
        await h.wait_until_delivered(h.seeded.dead_id)
    assert reply.status == 303


async def test_form_redirect_never_leaves_the_server(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        reply = await h.post("/ui/outbox/retry", data={"back": "//attacker.example/"})
    assert reply.headers["Location"].startswith("/?notice=")


async def test_cross_origin_form_post_is_refused(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/retry", data={"back": "/"},
                             headers={"Origin": "https://attacker.example"})
        status = await h.outbox_status(h.seeded.dead_id)
    assert reply.status == 403
    assert status is DeliveryStatus.DEAD


async def test_with_a_token_the_page_asks_to_sign_in_instead_of_showing_actions(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN) as h:
        outbox = _section((await h.get("/")).text, "outbox")
    assert 'action="/ui/sign-in"' in outbox
    assert "/retry" not in outbox


async def test_with_a_token_a_form_without_it_is_401(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN) as h:
        assert h.seeded is not None
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/retry", data={"back": "/"})
        status = await h.outbox_status(h.seeded.dead_id)
    assert reply.status == 401
    assert "<html" in reply.text
    assert status is DeliveryStatus.DEAD


async def test_with_a_token_a_form_carrying_it_is_allowed(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN) as h:
        assert h.seeded is not None
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/retry",
                             data={"back": "/", "token": ADMIN_TOKEN})
        await h.wait_until_delivered(h.seeded.dead_id)
    assert reply.status == 303


async def test_sign_in_sets_a_cookie_that_authorizes_forms(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN) as h:
        assert h.seeded is not None
        wrong = await h.post("/ui/sign-in", data={"token": "nope", "back": "/"})
        signed_in = await h.post("/ui/sign-in", data={"token": ADMIN_TOKEN, "back": "/"})
        cookie = signed_in.headers["Set-Cookie"].split(";")[0]
        page = await h.get("/", headers={"Cookie": cookie})
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/retry", data={"back": "/"},
                             headers={"Cookie": cookie})
        await h.wait_until_delivered(h.seeded.dead_id)
    assert wrong.status == 401
    assert ADMIN_TOKEN not in cookie
    assert "HttpOnly" in signed_in.headers["Set-Cookie"]
    assert "SameSite=Strict" in signed_in.headers["Set-Cookie"]
    assert f'action="/ui/outbox/{h.seeded.dead_id}/retry"' in page.text
    assert reply.status == 303


async def test_public_listen_without_token_says_actions_are_disabled(tmp_path: Path) -> None:
    async with harness(tmp_path, listen="0.0.0.0:8080") as h:
        assert h.seeded is not None
        outbox = _section((await h.get("/")).text, "outbox")
        reply = await h.post(f"/ui/outbox/{h.seeded.dead_id}/retry", data={"back": "/"})
    assert "Actions are disabled" in outbox
    assert "/retry" not in outbox
    assert reply.status == 403


async def test_page_escapes_text_from_upstream_apis(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.upstream.zendesk.set_job("job-running", message="<script>alert(1)</script>")
        await h.poll("zd")
        page = (await h.get("/")).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_stylesheet_is_served_locally(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.get("/static/dashboard.css")
        html = (await h.get("/")).text
    assert reply.status == 200
    assert "prefers-color-scheme: dark" in reply.text
    assert "http://" not in html.replace(h.url, "")
    assert "https://" not in html


async def test_sign_out_clears_the_cookie(tmp_path: Path) -> None:
    async with harness(tmp_path, admin_token=ADMIN_TOKEN) as h:
        signed_in = await h.post("/ui/sign-in", data={"token": ADMIN_TOKEN, "back": "/"})
        cookie = signed_in.headers["Set-Cookie"].split(";")[0]
        page = await h.get("/", headers={"Cookie": cookie})
        signed_out = await h.post("/ui/sign-out", data={"back": "/"},
                                  headers={"Cookie": cookie})
    assert 'action="/ui/sign-out"' in page.text
    assert signed_out.status == 303
    assert "Max-Age=0" in signed_out.headers["Set-Cookie"]
