"""Value types of rules.toml: durations ("30s", "PT30S"), the Standard Webhooks signing
secret, the strict model base, and the `[sources.auth]` tables. `bridge.config.schema`
builds the sources, sinks and rules from them (and re-exports them)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
)

from bridge.config.fields import TokenUrl
from bridge.signing import decode_secret

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
# ISO 8601 durations ("PT30S", "P1DT2H", "PT1.5H", "P1W") are pydantic's to parse.
_ISO = TypeAdapter(timedelta)


def parse_duration(value: object) -> timedelta:
    """Parse "500ms", "30s", "5m", "1h", "2d" or ISO 8601 "PT30S" into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f'expected a duration like "30s", "5m", "1h" or "PT30S", got {value!r}')
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    short = _SHORT.match(value)
    if short:
        return timedelta(seconds=float(short.group(1)) * _UNITS[short.group(2)])
    iso = value.strip().upper()
    if iso.startswith("P"):  # not "-P...": a negative duration is a mistake here
        try:
            return _ISO.validate_python(iso)
        except ValidationError:
            pass
    raise ValueError(
        f'expected a duration like "500ms", "30s", "5m", "1h" or "PT30S", got {value!r}'
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be greater than zero")
    return value


PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
# The largest `max_retry_after` a sink may set.
MAX_RETRY_AFTER_CAP = timedelta(days=7)


def _signing_secret(value: SecretStr) -> SecretStr:
    # Decoded now rather than on the first push or delivery; the message never repeats it.
    try:
        decode_secret(value.get_secret_value())
    except ValueError as exc:
        raise ValueError(
            f"{exc}; make one with: python -c \"import base64, os; "
            f"print('whsec_' + base64.b64encode(os.urandom(24)).decode())\"") from None
    return value


# A Standard Webhooks signing secret: `whsec_` followed by base64 key bytes.
SigningSecret = Annotated[SecretStr, AfterValidator(_signing_secret)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- auth -------------------------------------------------------------------------------


class BasicAuth(Strict):
    type: Literal["basic"]
    username: str
    password: SecretStr


class BearerAuth(Strict):
    type: Literal["bearer"]
    token: SecretStr


class HeaderAuth(Strict):
    type: Literal["header"]
    header: str
    value: SecretStr


class OAuth2Auth(Strict):
    type: Literal["oauth2"]
    token_url: TokenUrl | None = None
    client_id: str
    client_secret: SecretStr
    scope: str | None = None

class NoAuth(Strict):
    type: Literal["none"]


Auth = Annotated[
    BasicAuth | BearerAuth | HeaderAuth | OAuth2Auth | NoAuth, Field(discriminator="type")
]
