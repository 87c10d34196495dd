"""The shape of rules.toml (contract section 2), validated strictly with pydantic.

Every model forbids unknown keys and is frozen. Each source and sink kind has its own model
(a `SourceBase` / `SinkBase` subclass with `kind: Literal[...]`) that validates its own
fields, rules between them included, once. The kinds themselves are listed, each with its
model, factory and capabilities, in the registries `bridge.sources.SOURCE_KINDS` and
`bridge.sinks.SINK_KINDS`; the loader validates each table as a discriminated union on
`kind` built from them. The source models live in `bridge.config.sources` (re-exported
here); the sink, rule and test models here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.config.fields import (
    SlackApiUrl,
    SlackWebhookUrl,
    WebhookUrl,
)
from bridge.config.sources import (
    EsalesSource as EsalesSource,
)
from bridge.config.sources import (
    HttpSource as HttpSource,
)
from bridge.config.sources import (
    JtlSource as JtlSource,
)
from bridge.config.sources import (
    PushSource as PushSource,
)
from bridge.config.sources import (
    SourceBase as SourceBase,
)
from bridge.config.sources import (
    TerminalSource as TerminalSource,
)
from bridge.config.sources import (
    ZendeskSource as ZendeskSource,
)
from bridge.config.values import (
    MAX_RETRY_AFTER_CAP as MAX_RETRY_AFTER_CAP,
)
from bridge.config.values import (
    Auth as Auth,
)
from bridge.config.values import (
    BasicAuth as BasicAuth,
)
from bridge.config.values import (
    BearerAuth as BearerAuth,
)
from bridge.config.values import (
    Duration as Duration,
)
from bridge.config.values import (
    HeaderAuth as HeaderAuth,
)
from bridge.config.values import (
    NoAuth as NoAuth,
)
from bridge.config.values import (
    OAuth2Auth as OAuth2Auth,
)
from bridge.config.values import (
    PositiveDuration as PositiveDuration,
)
from bridge.config.values import (
    SigningSecret as SigningSecret,
)
from bridge.config.values import (
    Strict as Strict,
)
from bridge.config.values import (
    parse_duration as parse_duration,
)
from bridge.model import EventKind, JobState, Priority
from bridge.silence_reminder import SilenceReminder
from bridge.windows import Window

# --- sinks ------------------------------------------------------------------------------


# About the Standard Webhooks schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h),
# stretched to the contract's default of 10 attempts over about 24 h (the waits add up to
# 23 h 35 min).
DEFAULT_RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=3),
    timedelta(hours=4),
    timedelta(hours=6),
    timedelta(hours=7),
)


class RetryPolicy(Strict):
    attempts: int = Field(default=10, ge=1, le=100)
    max_age: PositiveDuration = timedelta(hours=24)
    # Waits between attempts; the last one repeats. An extension of the contract.
    schedule: list[PositiveDuration] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE), min_length=1
    )


class SinkBase(Strict):
    name: str = Field(min_length=1)
    kind: str
    timeout: PositiveDuration = timedelta(seconds=10)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    # The longest Retry-After (or rate-limit reset) honoured; a receiver asking for more is
    # retried after this. An extension of the contract.
    max_retry_after: PositiveDuration = timedelta(hours=1)
    # Once a day, the silences in force for long (bridge.silence_reminder). An extension.
    silence_reminder: SilenceReminder | None = None

    def body_template(self) -> str | None:
        """The template that renders this sink's request body, if its kind has one."""
        return None

    @field_validator("max_retry_after")
    @classmethod
    def _at_most_a_week(cls, value: timedelta) -> timedelta:
        # Longer outlives any retry policy worth having and only parks rows out of sight.
        if value > MAX_RETRY_AFTER_CAP:
            raise ValueError("must be at most 7d: a receiver asking to wait longer is "
                             "retried after max_retry_after")
        return value


class SlackRateLimits(Strict):
    """Slack's documented budgets (api.slack.com/apis/rate-limits), as token buckets the
    sender keeps to: posts about 1/s per channel with short bursts (also incoming webhooks),
    `chat.update` Tier 3, 50+/min per workspace. An extension of the contract."""

    post_per_second: float = Field(default=1.0, gt=0, le=1000)
    post_burst: int = Field(default=3, ge=1, le=100)
    update_per_minute: float = Field(default=50.0, gt=0, le=60_000)
    update_burst: int = Field(default=10, ge=1, le=1000)


class SlackSink(SinkBase):
    kind: Literal["slack"]
    token: SecretStr | None = None
    webhook_url: SlackWebhookUrl | None = None
    channel: str | None = None
    mode: Literal["post", "update", "thread"] = "post"
    base_url: SlackApiUrl = "https://slack.com/api/"
    rate_limits: SlackRateLimits = Field(default_factory=SlackRateLimits)
    # The older setting: when given, every call (post or edit) is spaced this far apart,
    # no bursts, instead of `rate_limits`; "0s" turns pacing off.
    min_interval: Duration | None = None
    # An urgent send that would wait longer than this for Slack's budget is named at once in
    # the channel's roll-up message (bridge.sinks.slack_rollup); "0s" turns that off.
    overflow_after: Duration = timedelta(seconds=3)
    # Buttons on job messages (bridge.sinks.slack_actions), verified with the app's secret.
    signing_secret: SecretStr | None = None
    actions: list[str] = Field(default_factory=list)

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, names: list[str]) -> list[str]:
        from bridge.sinks.slack_actions import known_names

        for name in names:
            if name not in known_names():
                raise ValueError(f"unknown action {name!r}; known: {', '.join(known_names())}")
        return names
    # Failure replies in a thread (update mode, digests) also show in the channel.
    reply_broadcast: bool = False

    @field_validator("overflow_after")
    @classmethod
    def _overflow_needs_a_token(cls, after: timedelta, info: ValidationInfo) -> timedelta:
        if after > timedelta(0) and info.data.get("token") is None:
            raise ValueError("needs 'token': the roll-up message is edited with chat.update, "
                             "which an incoming webhook cannot do (\"0s\" turns it off)")
        return after

    @field_validator("mode")
    @classmethod
    def _mode_needs_a_token(cls, mode: str, info: ValidationInfo) -> str:
        if (mode != "post" and info.data.get("token") is None
                and info.data.get("webhook_url") is not None):
            raise ValueError(f"mode {mode!r} needs a 'token': an incoming webhook can only post")
        return mode

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackSink:
        # Both would leave us guessing which way the user meant: the two differ in what the
        # sink can do (edits, threads, buttons), so the choice is theirs to write down.
        if self.token is not None and self.webhook_url is not None:
            raise ValueError(
                "give 'token' or 'webhook_url', not both: choose 'token' for the Web API "
                "(chat.postMessage, edit in place, threads), or 'webhook_url' for an incoming "
                "webhook (post only)")
        if self.token is None and self.webhook_url is None:
            raise ValueError(
                "a slack sink needs 'token' (Web API) or 'webhook_url' (incoming webhook)")
        if self.token is not None and not self.channel:
            raise ValueError("a slack sink with 'token' needs 'channel'")
        if self.actions and (self.signing_secret is None or self.token is None):
            raise ValueError("'actions' need 'signing_secret' (your Slack app's signing secret, "
                             "to verify button presses) and 'token' (to update the message)")
        if self.min_interval is not None and "rate_limits" in self.model_fields_set:
            raise ValueError("give 'rate_limits' or the older 'min_interval', not both")
        return self


class WebhookSink(SinkBase):
    kind: Literal["webhook"]
    url: WebhookUrl
    secret: SigningSecret | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None

    def body_template(self) -> str | None:
        return self.body


# --- rules and tests ----------------------------------------------------------------------


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StateList = Annotated[list[JobState], BeforeValidator(_as_list)]


# What a rule may group by: event fields as templates name them (`job.state`, `job.fields.x`).
GROUP_KEYS = ("source", "rule", "on", "from", "to", "reason", "job.state")
GROUP_FIELDS = frozenset({"source", "rule", "on", "from", "to", "reason", "job", "previous"})


class Rule(Strict):
    name: str = Field(min_length=1)
    on: EventKind
    source: str = "*"
    from_: StateList | None = Field(default=None, alias="from")
    to: StateList | None = None
    when: str | None = None
    template: str
    notify: Annotated[list[str], BeforeValidator(_as_list)] = Field(min_length=1)
    throttle: Duration | None = None
    repeat: PositiveDuration | None = None
    continue_: bool = Field(default=False, alias="continue")
    # Overrides the priority derived from the event (failures high, starts low).
    priority: Priority | None = None
    # Names of [[windows]]: silenced while one is open / while none is (bridge.windows).
    mute_during: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    active_during: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    # Grouping (bridge.groups): events of this rule with equal `group_by` values become one
    # digest, flushed `group_wait` after the group's first event, then at most once per
    # `group_interval` (Alertmanager's names and defaults).
    group_by: list[str] | None = None
    group_wait: Duration = timedelta(seconds=30)
    group_interval: PositiveDuration = timedelta(minutes=5)
    group_template: str = "digest.slack.j2"

    @field_validator("group_by")
    @classmethod
    def _group_fields(cls, fields: list[str] | None) -> list[str] | None:
        if fields is None:
            return None
        if not fields:
            raise ValueError('list at least one event field, e.g. group_by = ["source"]')
        for name in fields:
            head = name.split(".", 1)[0]
            bare_job = head in ("job", "previous") and "." not in name
            if head not in GROUP_FIELDS or name.endswith(".") or bare_job:
                raise ValueError(
                    f"cannot group by {name!r}: name an event field ({', '.join(GROUP_KEYS)}, "
                    "or another job.<field>)")
        if len(set(fields)) != len(fields):
            raise ValueError("a field is listed twice")
        return fields

    @field_validator("group_wait", "group_interval", "group_template")
    @classmethod
    def _needs_group_by(cls, value: Any, info: ValidationInfo) -> Any:
        # A group_by that failed its own check is missing from info.data: say nothing more.
        if "group_by" in info.data and info.data["group_by"] is None:
            raise ValueError(f"{info.field_name} has no effect without group_by "
                             '(e.g. group_by = ["source"])')
        if isinstance(value, timedelta) and value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @property
    def grouped(self) -> bool:
        return self.group_by is not None


class Expectation(Strict):
    sink: str
    contains: str | None = None
    not_contains: str | None = None
    equals: str | None = None


class RuleTest(Strict):
    name: str
    event: dict[str, Any]
    expect: list[Expectation] = Field(default_factory=list)


class BridgeSettings(Strict):
    state: str = "sqlite:///bridge-state.db"
    listen: str = "127.0.0.1:8080"
    templates: str = "templates"
    timezone: str = "UTC"
    admin_token: SecretStr | None = None


class Config(Strict):
    """A whole, validated rules.toml. Paths are already resolved relative to the file."""

    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    sources: list[SourceBase] = Field(default_factory=list)
    sinks: list[SinkBase] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    windows: list[Window] = Field(default_factory=list)
    tests: list[RuleTest] = Field(default_factory=list)
    # Where the config came from, for messages; not a key users write.
    path: str = ""

    def source(self, name: str) -> SourceBase:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def sink(self, name: str) -> SinkBase:
        for sink in self.sinks:
            if sink.name == name:
                return sink
        raise KeyError(name)
