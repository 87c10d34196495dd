"""The source tables of rules.toml (contract section 2): one pydantic model per source kind.

Each model is a `SourceBase` subclass with `kind: Literal[...]` that validates its own fields,
rules between them included, once; `bridge.sources.SOURCE_KINDS` lists them with their
factories. `bridge.config.schema` re-exports them for older imports.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from bridge.config.fields import JMESPath, check_url
from bridge.config.values import (
    Auth,
    BasicAuth,
    Duration,
    PositiveDuration,
    SigningSecret,
    Strict,
)
from bridge.model import JobState


class SourceBase(Strict):
    # Shown in messages about `base_url`; each kind names its own.
    BASE_URL_EXAMPLE: ClassVar[str] = "https://api.example.com"

    name: str = Field(min_length=1)
    kind: str
    base_url: str | None = None
    interval: PositiveDuration = timedelta(seconds=30)
    timeout: PositiveDuration = timedelta(seconds=10)
    stall_after: PositiveDuration = timedelta(minutes=15)
    # A job reported missing (404, NOT_FOUND, absent from the list) for this long vanishes.
    vanish_after: Duration = timedelta(0)
    # Terminal jobs are kept this long after they finish, then forgotten.
    retain: PositiveDuration = timedelta(hours=24)
    progress_step: float = Field(default=25.0, gt=0, le=100)
    # Consecutive failed polls before `source_down` (1: the first failure).
    down_after: int = Field(default=3, ge=1, le=1000)
    # The longest rate-limit wait (a 429's Retry-After, a spent budget) sat out inside one
    # poll; a longer one fails the poll and the scheduler waits it out. 0s: never wait.
    rate_limit_wait: Duration = timedelta(seconds=60)
    ids: list[str] = Field(default_factory=list)
    auth: Auth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    states: dict[str, JobState] = Field(default_factory=dict)

    @field_validator("ids", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        # eSales ids are 19-digit numbers: a TOML integer would survive, but keep them text.
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        # "" (an empty `${VAR:-}`) counts as unset, like a missing key.
        return value if not value else check_url(value, like=cls.BASE_URL_EXAMPLE)

    def push_secret(self) -> SecretStr | None:
        """The secret that signs pushes to `POST /v1/events/{source}`; None when unset (or
        the kind has no such setting, see `SourceCapabilities.accepts_push`)."""
        return None

    def _require_base_url(self, like: str) -> None:
        if not self.base_url:
            raise ValueError(f"missing required key 'base_url' for kind {self.kind!r}"
                             f" (like {like!r})")


class JtlSource(SourceBase):
    BASE_URL_EXAMPLE = "https://api.jtl-cloud.com/erp"
    kind: Literal["jtl"]
    tenant_id: str
    app_id: str = "bridge/0.1.0"
    app_version: str = "0.1.0"
    api_key: SecretStr | None = None


class TerminalSource(SourceBase):
    BASE_URL_EXAMPLE = "https://api.withterminal.com/tsp/v1"
    kind: Literal["terminal"]
    connection_token: SecretStr
    # Terminal's webhook signing secret, for syncs pushed to POST /v1/events/{source}.
    secret: SigningSecret | None = None

    def push_secret(self) -> SecretStr | None:
        return self.secret


class EsalesSource(SourceBase):
    BASE_URL_EXAMPLE = "https://{cluster-id}.elevate-api.cloud"
    kind: Literal["esales"]
    api_key: SecretStr
    # The admin API version in the path (`/api/admin/{api_version}/import/status`).
    api_version: str = Field(default="v3", pattern=r"^v[0-9]+$")
    # An import not found yet may just have been started: wait this long before `vanished`.
    vanish_after: Duration = timedelta(minutes=2)

    @model_validator(mode="after")
    def _has_base_url(self) -> EsalesSource:
        self._require_base_url(self.BASE_URL_EXAMPLE)
        return self


class ZendeskSource(SourceBase):
    BASE_URL_EXAMPLE = "https://{subdomain}.zendesk.com"
    kind: Literal["zendesk"]

    @field_validator("auth")
    @classmethod
    def _api_token_login(cls, auth: Any) -> Any:
        # Zendesk takes an API token only as the password of "EMAIL/token"; without the
        # suffix every poll is a 401 that names nothing.
        if isinstance(auth, BasicAuth) and not auth.username.endswith("/token"):
            raise ValueError(f"Zendesk API token login needs the username 'EMAIL/token' "
                             f"(like 'you@example.com/token'), got {auth.username!r}: "
                             "append /token")
        return auth

    @model_validator(mode="after")
    def _has_base_url(self) -> ZendeskSource:
        self._require_base_url(self.BASE_URL_EXAMPLE)
        return self


class HttpSource(SourceBase):
    kind: Literal["http"]
    url: str
    method: Literal["GET", "POST"] = "GET"
    items: JMESPath | None = None
    id: JMESPath = "id"
    state: JMESPath = "status"
    progress: JMESPath | None = None
    message: JMESPath | None = None
    body: dict[str, Any] | None = None

    @field_validator("url")
    @classmethod
    def _absolute_or_under_base_url(cls, value: str, info: ValidationInfo) -> str:
        if "://" in value:
            return check_url(value, like="https://api.example.com/jobs")
        # `base_url` is validated first; when it failed it is not in `info.data` and has
        # its own message already (a second one here would only mislead).
        if "base_url" in info.data and not info.data["base_url"]:
            raise ValueError("a relative url needs 'base_url' too (or write a full URL "
                             "like 'https://api.example.com/jobs')")
        return value

class PushSource(SourceBase):
    kind: Literal["push"]
    secret: SigningSecret | None = None
    id: JMESPath = "id"
    state: JMESPath = "status"
    progress: JMESPath | None = None
    message: JMESPath | None = None
    def push_secret(self) -> SecretStr | None:
        return self.secret
