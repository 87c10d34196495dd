"""Template filters and the per-output escaping rules (`Flavor`).

Templates are rendered in one of four flavors, picked from the template's name and the sink:

- `SLACK`: Slack mrkdwn text; interpolated values have `& < >` escaped.
- `BLOCKS`: Block Kit JSON for Slack; values are mrkdwn-escaped and then JSON-string escaped.
- `JSON`: a webhook body; values are JSON-string escaped.
- `TEXT`: plain text (a webhook envelope's `text`); values are left as they are.

The environment autoescapes with `finalize` doing the flavor's escaping and returning
`Markup`, which means "final output for this flavor": macro and `{% set %}` block results
are not escaped twice, and filters that build markup (`link`, `tojson`, `slack_escape`)
return output already final for the flavor they run in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta, tzinfo
from enum import Enum
from functools import lru_cache
from typing import Any

from jinja2 import pass_context, pass_environment
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from bridge.durations import format_duration


class Flavor(Enum):
    TEXT = "text"
    SLACK = "slack"
    BLOCKS = "blocks"
    JSON = "json"

    @property
    def json(self) -> bool:
        return self in (Flavor.BLOCKS, Flavor.JSON)

    @property
    def mrkdwn(self) -> bool:
        return self in (Flavor.SLACK, Flavor.BLOCKS)


# One encoder, made once: json.dumps(ensure_ascii=False) would build one per call, and
# `encode` of a lone str goes straight to the C string encoder.
_encode_json_string: Callable[[str], str] = json.JSONEncoder(ensure_ascii=False).encode
# Slack shows at most 3,000 characters in one Block Kit text field.
MAX_JSON_VALUE = 2_900
STATE_EMOJI = {
    "succeeded": "✅",
    "failed": "❌",
    "cancelled": "🚫",
    "pending": "⏳",
    "running": "🔄",
    "blocked": "⛔",
    "unknown": "❔",
}
EVENT_EMOJI = {
    "progress": "🔄",
    "stalled": "🐢",
    "appeared": "🆕",
    "vanished": "👻",
    "source_down": "🔴",
    "source_up": "🟢",
}


class BridgeEnvironment(ImmutableSandboxedEnvironment):
    """A sandboxed environment that knows the flavor it renders and the display timezone."""

    def __init__(self, flavor: Flavor, timezone: tzinfo, **options: Any):
        self.flavor = flavor
        self.timezone = timezone
        self.mrkdwn = flavor.mrkdwn
        self.json = flavor.json
        self.escape = _ESCAPERS[flavor]
        self.escape_ready = _json_escape if flavor.json else _identity
        self._verdicts: dict[tuple[type, str], bool] = {}
        super().__init__(autoescape=True, finalize=_finalizer(flavor), **options)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # The sandbox's verdict depends only on the object's type and the attribute name
        # (a leading underscore, an internal attribute of that type, a mutating method of a
        # known mutable type) and computing it is a large part of a render: remember it.
        # This is the documented hook; the sandbox's own getattr still makes every access.
        key = (type(obj), attr)
        safe = self._verdicts.get(key)
        if safe is None:
            safe = self._verdicts[key] = super().is_safe_attribute(obj, attr, value)
        return safe

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Jinja layers a template's globals over the environment's with a ChainMap, which it
        # flattens on every render. Ours are set before any template loads and never change.
        return {**self.globals, **(d or {})}


def slack_escape_text(text: str) -> str:
    """Escape the three characters Slack mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def json_escape_text(text: str) -> str:
    """The inside of a JSON string literal for `text`."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text  # nothing to escape: no control character, quote or backslash
    return _encode_json_string(text)[1:-1]


def plain(value: Any) -> str:
    """How a value reads in a message: "" for None, 40 for 40.0, "5m 03s" for a timedelta."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _identity(text: str) -> str:
    return text


# The two escapers below run for every `{{ }}` of a JSON template, so the first steps (mrkdwn
# escape, cap at MAX_JSON_VALUE) are written out inline rather than as calls.
def _blocks_escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(text) > MAX_JSON_VALUE:
        text = text[: MAX_JSON_VALUE - 1] + "…"
    return json_escape_text(text)


def _json_escape(text: str) -> str:
    if len(text) > MAX_JSON_VALUE:
        text = text[: MAX_JSON_VALUE - 1] + "…"
    return json_escape_text(text)


_ESCAPERS: dict[Flavor, Callable[[str], str]] = {
    Flavor.TEXT: _identity,
    Flavor.SLACK: slack_escape_text,
    Flavor.BLOCKS: _blocks_escape,
    Flavor.JSON: _json_escape,
}


class _Final(str):
    """Text already escaped for the flavor. Autoescape passes every output through
    markupsafe's HTML `escape`, which takes an object with `__html__` as safe (markupsafe's
    documented protocol): this is Markup without Markup's constructor, once per `{{ }}`."""

    __slots__ = ()
    __html__ = str.__str__


def _finalizer(flavor: Flavor) -> Callable[[Context, Any], str]:
    escape = _ESCAPERS[flavor]

    # `pass_context` makes Jinja run finalize at render time for constants too: at compile
    # time it would HTML-escape a constant before finalize sees it.
    @pass_context
    def finalize(context: Context, value: Any) -> str:
        if type(value) is str:  # the common case first: no isinstance chain
            return _Final(escape(value))
        if isinstance(value, Markup):  # already final: a filter's markup, a macro's output
            return value
        return _Final(escape(plain(value)))

    return finalize


def final(env: BridgeEnvironment, text: str, *, mrkdwn_ready: bool = False) -> Markup:
    """`text` made final for the environment's flavor; `mrkdwn_ready` text is already valid
    Slack markup (a link, a date), so it only needs JSON escaping, if any."""
    return Markup(env.escape_ready(text) if mrkdwn_ready else env.escape(text))


# --- filters ----------------------------------------------------------------------------


@pass_context
def ago(context: Context, value: datetime | None) -> str:
    """How long before the event (`at`) a moment was: "12m 05s ago"."""
    if value is None:
        return ""
    reference = context.get("at")
    now = reference if isinstance(reference, datetime) else datetime.now(UTC)
    return f"{format_duration(now - value)} ago"


def progress_bar(value: float | None, width: int = 10) -> str:
    """`▰▰▰▰▰▰▱▱▱▱ 60%`; empty when the job reports no progress."""
    if value is None:
        return ""
    percent = max(0.0, min(100.0, float(value)))
    filled = int(percent * width // 100)
    return f"{'▰' * filled}{'▱' * (width - filled)} {percent:.0f}%"


def state_emoji(state: Any) -> str:
    """✅ ❌ 🚫 ⏳ 🔄 ⛔ ❔ for a canonical state; event kinds get their own."""
    key = plain(state)
    return STATE_EMOJI.get(key) or EVENT_EMOJI.get(key, "❔")


@pass_environment
def slack_escape(env: BridgeEnvironment, value: Any) -> Markup:
    """Escape for Slack mrkdwn (done automatically for `{{ }}` in Slack templates)."""
    return final(env, slack_escape_text(plain(value)), mrkdwn_ready=True)


@pass_environment
def link(env: BridgeEnvironment, text: Any, url: str | None) -> Markup:
    """`text` linked to `url` (Slack `<url|text>`; "text (url)" in plain text and JSON)."""
    label = plain(text)
    if not url:
        return final(env, label)
    if env.mrkdwn:
        safe_url = slack_escape_text(url).replace("|", "%7C")
        return final(env, f"<{safe_url}|{slack_escape_text(label)}>", mrkdwn_ready=True)
    return final(env, f"{label} ({url})")


@pass_environment
def slack_date(env: BridgeEnvironment, value: datetime | None,
               token: str = "{date_short_pretty} {time}") -> Markup:
    """A Slack date that each reader sees in their own timezone (plain time elsewhere)."""
    if value is None:
        return Markup("")
    fallback = format_time(env, value)
    if not env.mrkdwn:
        return final(env, fallback)
    stamp = int(value.timestamp())
    return final(env, f"<!date^{stamp}^{token}|{slack_escape_text(fallback)}>",
                 mrkdwn_ready=True)


@pass_environment
def format_time(env: BridgeEnvironment, value: datetime | None,
                fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A moment in the configured `[bridge] timezone`."""
    if value is None:
        return ""
    return _local_time(value, env.timezone, fmt)


@lru_cache(maxsize=256)
def _local_time(value: datetime, timezone: tzinfo, fmt: str) -> str:
    # The events of one poll share their time; formatting it once per poll is enough.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(timezone).strftime(fmt)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        as_dict = getattr(value, "as_dict", None)
        return as_dict() if callable(as_dict) else dataclasses.asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def to_json_text(value: Any, indent: int | None = None) -> str:
    """JSON for any event value (jobs, datetimes, durations included)."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, indent=indent)


@pass_environment
def tojson(env: BridgeEnvironment, value: Any, indent: int | None = None) -> Markup:
    """A JSON value, written as is in JSON templates (put it outside quotes)."""
    text = to_json_text(value, indent)
    if env.mrkdwn and not env.json:
        return Markup(slack_escape_text(text))
    return Markup(text)


@pass_environment
def quote(env: BridgeEnvironment, value: Any) -> Markup:
    """Every line of `value` as a Slack block quote (`> `), escaped."""
    lines = plain(value).splitlines() or [""]
    if not env.mrkdwn:
        return final(env, "\n".join(f"> {line}" for line in lines))
    quoted = "\n".join(f"> {slack_escape_text(line)}" for line in lines)
    return final(env, quoted, mrkdwn_ready=True)


@pass_environment
def details(env: BridgeEnvironment, event: Any, progress: bool = True) -> Markup:
    """One line of facts about an event's job, joined with " · ":
    `raw state` · progress bar · failed items · run · ⏱ duration (each only when it says
    something). `progress=false` leaves the bar out, for templates that show it already."""
    job = getattr(event, "job", None)
    parts = []
    if job is not None:
        if job.raw_state and job.raw_state.lower() != str(job.state):
            parts.append(f"`{job.raw_state}`")
        if progress and job.progress is not None and job.state != "succeeded":
            parts.append(progress_bar(job.progress))
        if job.failed_items:
            parts.append(pluralize(job.failed_items, "failed item"))
        if job.run > 1:
            parts.append(f"run {job.run}")
    duration = getattr(event, "duration", None)
    if duration is not None:
        parts.append(f"⏱ {format_duration(duration)}")
    return final(env, " · ".join(parts))


def pluralize(count: Any, singular: str, plural: str | None = None) -> str:
    """`3 | pluralize("item")` -> "3 items"."""
    number = 0 if count is None else count
    word = singular if number == 1 else (plural or singular + "s")
    return f"{plain(number)} {word}"


FILTERS: dict[str, Callable[..., Any]] = {
    "duration": format_duration,
    "ago": ago,
    "progress_bar": progress_bar,
    "state_emoji": state_emoji,
    "slack_escape": slack_escape,
    "link": link,
    "slack_date": slack_date,
    "time": format_time,
    "tojson": tojson,
    "pluralize": pluralize,
    "quote": quote,
    "details": details,
}
