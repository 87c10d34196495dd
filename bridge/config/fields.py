"""Field checks the config models share: URLs with a scheme and a host, JMESPath that compiles.

They run while the models validate, so `bridge check` and `bridge run` refuse the same
mistakes with the same `file:line: path: message` before anything (a state file, a poll)
is started. Messages say what was expected with an example; a secret value (a webhook URL
carries its secret in the path) is never quoted.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated
from urllib.parse import urlsplit

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import AfterValidator, SecretStr

SCHEMES = ("http", "https")


def url_problem(value: str, *, like: str, secret: bool = False) -> str | None:
    """Why `value` is not an absolute http(s) URL, or None when it is one."""
    shown = "the value" if secret else repr(value)
    if "://" not in value:
        fix = "" if secret else f": write {'https://' + value.lstrip('/')!r}"
        return f"expected an http(s) URL like {like!r}; {shown} has no scheme{fix}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return f"expected an http(s) URL like {like!r}; {shown} has an invalid host or port"
    if parts.scheme.lower() not in SCHEMES:
        return (f"expected an http(s) URL like {like!r}; {shown} uses {parts.scheme!r}"
                f" (only http and https)")
    if not parts.hostname:
        return f"expected an http(s) URL like {like!r}; {shown} has no host"
    return None


def check_url(value: str, *, like: str, secret: bool = False) -> str:
    problem = url_problem(value, like=like, secret=secret)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_jmespath(expression: str) -> str:
    """Compile now: a typo is a config error, not a failed poll at 3 a.m."""
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {_jmespath_why(exc)} "
                         "(see https://jmespath.org/tutorial.html)") from None
    return expression


def _jmespath_why(exc: JMESPathError) -> str:
    # jmespath's str() spreads a caret picture over three lines; one line says the same.
    position = getattr(exc, "lex_position", None)
    what = getattr(exc, "message", None) or getattr(exc, "msg", None) or "invalid"
    if what == "Invalid jmespath expression":
        what = "incomplete expression (an unclosed bracket or quote?)"
    return f"{what} at character {position}" if isinstance(position, int) else str(what)


def _secret_url(value: SecretStr, *, like: str) -> SecretStr:
    check_url(value.get_secret_value(), like=like, secret=True)
    return value


TokenUrl = Annotated[str, AfterValidator(partial(
    check_url, like="https://auth.jtl-cloud.com/oauth2/token"))]
SlackApiUrl = Annotated[str, AfterValidator(partial(check_url, like="https://slack.com/api/"))]
SlackWebhookUrl = Annotated[SecretStr, AfterValidator(partial(
    _secret_url, like="https://hooks.slack.com/services/T…/B…/…"))]
WebhookUrl = Annotated[SecretStr, AfterValidator(partial(
    _secret_url, like="https://hooks.example.com/bridge"))]
JMESPath = Annotated[str, AfterValidator(check_jmespath)]
