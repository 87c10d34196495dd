"""The dashboard at `/`: server-rendered HTML of sources, jobs, events and the outbox.

Readable without JavaScript (a `<noscript>` meta refresh); with it, a few lines of inline
script re-fetch the live part from `/ui/live` every few seconds. Operator actions are plain
POST forms under `/ui/` that answer with a redirect back to the page (post/redirect/get).
These templates are ours, rendered with a normal autoescaping Environment; the sandboxed
environment is only for user templates.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from bridge.errors import StoreError
from bridge.model import DeliveryStatus, Event, JobState
from bridge.server import timeline
from bridge.server.api import readiness
from bridge.server.auth import COOKIE
from bridge.server.humanize import human_duration
from bridge.server.state import ServerState, state_of
from bridge.server.views import delivery_json, job_json, source_json, stats_json

log = logging.getLogger(__name__)

REFRESH_SECONDS = 3
JOB_LIMIT = 200
EVENT_LIMIT = 30
OUTBOX_LIMIT = 50
TIMELINE_PAGE = 500

_NOTICES = {
    "retried": "Re-queued {n} deliver{ies}.",
    "dropped": "Dropped {n} deliver{ies}.",
    "signed_in": "Signed in: actions are enabled in this browser.",
    "signed_out": "Signed out.",
    "silenced": "Silence added.",
    "expired": "Silence expired.",
}


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.server", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["dur"] = human_duration
    env.filters["pct"] = _percent
    return env


@jinja2.pass_context
def _ago(context: jinja2.runtime.Context, value: str | None) -> str:
    if not value:
        return "–"
    now: datetime = context["now"]
    delta = (now - datetime.fromisoformat(value)).total_seconds()
    if delta < 0:
        return "in " + human_duration(-delta)
    return human_duration(delta) + " ago" if delta >= 1 else "just now"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    source: str | None = None
    state: JobState | None = None
    # The timeline's range (bridge.server.timeline.RANGES); the default is left out of URLs.
    range: str = timeline.DEFAULT_RANGE

    @classmethod
    def from_query(cls, request: web.Request) -> Filters:
        state = request.query.get("state") or None
        return cls(
            source=request.query.get("source") or None,
            state=JobState(state) if state in set(JobState) else None,
            range=timeline.range_key(request.query.get("range")),
        )

    def pairs(self) -> dict[str, str | None]:
        return {"source": self.source, "state": str(self.state) if self.state else None,
                "range": self.range if self.range != timeline.DEFAULT_RANGE else None}

    def query(self) -> str:
        pairs = self.pairs()
        text = urlencode({k: v for k, v in pairs.items() if v})
        return f"?{text}" if text else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything one render of the page shows, read once per request."""

    now: datetime
    reasons: list[str]
    stats: dict[str, Any]
    sources: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    events: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    delivered: list[dict[str, Any]]
    filters: Filters
    silences: list[dict[str, Any]] = field(default_factory=list)
    silenced: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    states: list[str] = field(default_factory=lambda: [str(s) for s in JobState])
    timelines: list[timeline.SourceTimeline] = field(default_factory=list)


async def snapshot(state: ServerState, filters: Filters) -> Snapshot:
    now = state.clock()
    reasons = await readiness(state)
    store = state.runtime.store
    sources = [source_json(v) for v in await state.runtime.sources()]
    try:
        jobs = await store.list_jobs(
            filters.source, str(filters.state) if filters.state else None, JOB_LIMIT
        )
        events = await store.recent_events(EVENT_LIMIT)
        outbox = {s: await store.list_outbox(s, OUTBOX_LIMIT) for s in DeliveryStatus}
        stats = await store.outbox_stats()
        silences = [{**s.as_dict(), "status": str(s.status(now))}
                    for s in await store.list_silences(now)]
        timelines = await _timelines(state, [v["name"] for v in sources], filters.range, now)
    except StoreError as exc:
        # The page still shows health and sources, which say what is wrong.
        return Snapshot(now=now, reasons=reasons, stats={}, sources=sources, jobs=[], events=[],
                        dead=[], pending=[], delivered=[], filters=filters, error=str(exc))
    return Snapshot(
        now=now,
        reasons=reasons,
        stats=stats_json(stats, now),
        sources=sources,
        jobs=[job_json(j, now) for j in jobs],
        events=[{**e.as_dict(), "seq": seq} for seq, e in events],
        dead=[delivery_json(d, now) for d in outbox[DeliveryStatus.DEAD]],
        pending=[delivery_json(d, now) for d in outbox[DeliveryStatus.PENDING]],
        delivered=[delivery_json(d, now) for d in outbox[DeliveryStatus.DELIVERED][:10]],
        filters=filters,
        silences=silences,
        silenced=[delivery_json(d, now) for d in outbox[DeliveryStatus.SILENCED][:10]],
        timelines=timelines,
    )


async def _timelines(state: ServerState, names: list[str], key: str, now: datetime
                     ) -> list[timeline.SourceTimeline]:
    """Each source's timeline (bridge.server.timeline) over the range `key`, from its
    stored events and the stored poll buckets of every instance."""
    since = now - timeline.RANGES[key][0]
    buckets = await state.runtime.poll_buckets(since)
    zone = timeline.zone_of(state.runtime.config.bridge.timezone)
    out = []
    for name in names:
        events = await _events_since(state, name, since)
        drawn = timeline.source_timeline(name, events, [b for b in buckets if b.source == name],
                                         key=key, now=now, zone=zone)
        if drawn is not None:
            out.append(drawn)
    return out


async def _events_since(state: ServerState, source: str, since: datetime) -> list[Event]:
    """A source's stored events from `since` on (at most timeline.EVENTS_PER_SOURCE), read
    newest first a page at a time; a run that began before `since` shows from its start."""
    out: list[Event] = []
    before: int | None = None
    while len(out) < timeline.EVENTS_PER_SOURCE:
        page = await state.runtime.store.recent_events(TIMELINE_PAGE, before, source=source)
        out.extend(event for _, event in page)
        if len(page) < TIMELINE_PAGE or page[-1][1].at < since:
            break
        before = page[-1][0]
    return out


def _context(request: web.Request, snap: Snapshot) -> dict[str, Any]:
    state = state_of(request)
    auth = state.auth
    notice = _NOTICES.get(request.query.get("notice", ""))
    count = request.query.get("n", "")
    if notice:
        n = int(count) if count.isdigit() else 0
        notice = notice.format(n=n, ies="y" if n == 1 else "ies")
    return {
        "snap": snap,
        "now": snap.now,
        "ready": not snap.reasons,
        "notice": notice,
        "writes_enabled": auth.writes_enabled,
        "needs_sign_in": auth.token_required and not auth.cookie_matches(request),
        "token_required": auth.token_required,
        "back": "/" + snap.filters.query(),
        "refresh": REFRESH_SECONDS,
        "timeline_legend": timeline.legend(),
        "timeline_ranges": timeline.range_links(snap.filters.range, snap.filters.pairs()),
    }


def _html(request: web.Request, template: str, context: dict[str, Any],
          status: int = 200) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    env = state_of(request).templates
    body = env.get_template(template).render(**context, nonce=nonce)
    response = web.Response(text=body, content_type="text/html", status=status)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def page(request: web.Request) -> web.Response:
    snap = await snapshot(state_of(request), Filters.from_query(request))
    return _html(request, "dashboard.html", _context(request, snap))


async def live(request: web.Request) -> web.Response:
    """The live part of the page alone, for the refresh script."""
    snap = await snapshot(state_of(request), Filters.from_query(request))
    return _html(request, "live.html", _context(request, snap))


# --- actions ------------------------------------------------------------------------------------


def _back(form: Any, notice: str, n: int | None = None) -> web.HTTPSeeOther:
    back = str(form.get("back") or "/")
    # Only paths on this server: never an absolute URL someone slipped into the form.
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"
    sep = "&" if "?" in back else "?"
    extra = urlencode({"notice": notice, **({"n": n} if n is not None else {})})
    return web.HTTPSeeOther(location=f"{back}{sep}{extra}")


async def _authorized_form(request: web.Request) -> Any:
    form = await request.post()
    token = form.get("token")
    state_of(request).auth.check_form(request, token if isinstance(token, str) else None)
    return form


async def retry_one(request: web.Request) -> web.StreamResponse:
    form = await _authorized_form(request)
    count = await state_of(request).runtime.retry_deliveries(request.match_info["id"])
    raise _back(form, "retried", count)


async def drop_one(request: web.Request) -> web.StreamResponse:
    form = await _authorized_form(request)
    count = await state_of(request).runtime.drop_deliveries(request.match_info["id"])
    raise _back(form, "dropped", count)


async def retry_all(request: web.Request) -> web.StreamResponse:
    form = await _authorized_form(request)
    count = await state_of(request).runtime.retry_deliveries(None)
    raise _back(form, "retried", count)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await _authorized_form(request)
    response = _back(form, "signed_in")
    value = state_of(request).auth.cookie_value()
    if value is not None:
        response.set_cookie(COOKIE, value, httponly=True, samesite="Strict", path="/",
                            max_age=int(timedelta(days=30).total_seconds()))
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    response = _back(form, "signed_out")
    response.del_cookie(COOKIE, path="/")
    raise response


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return _html(request, "error.html", {"status": status, "message": message}, status=status)
