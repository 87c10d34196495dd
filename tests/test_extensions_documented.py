"""Every rules.toml key bridge accepts beyond the contract's is an extension, and the
contract asks for each to be documented: in docs/extensions.md and in the README.

The keys the contract names (section 2 of docs/contract.md) are listed here per table, as
the contract writes them; any other key a config model accepts must be named in code
(backticks) in both documents. A key added to a model without a word in the docs fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from bridge.config import schema, sources, values
from bridge.silence_reminder import SilenceReminder
from bridge.windows import Window

ROOT = Path(__file__).resolve().parent.parent

_COMMON_SOURCE = {"name", "kind", "base_url", "interval", "timeout", "stall_after",
                  "down_after", "ids", "auth", "headers", "states"}
_SINK = {"name", "kind"}

# Per config table: the keys contract section 2 names for it.
CONTRACT_KEYS: dict[type[BaseModel], set[str]] = {
    schema.BridgeSettings: {"state", "listen", "templates", "timezone"},
    sources.JtlSource: _COMMON_SOURCE | {"tenant_id", "app_id", "app_version", "api_key"},
    sources.TerminalSource: _COMMON_SOURCE | {"connection_token"},
    sources.EsalesSource: _COMMON_SOURCE | {"api_key"},
    sources.ZendeskSource: _COMMON_SOURCE,
    sources.HttpSource: _COMMON_SOURCE | {"url", "method", "items", "id", "state",
                                          "progress", "message"},
    sources.PushSource: _COMMON_SOURCE | {"secret", "id", "state", "progress", "message"},
    values.BasicAuth: {"type", "username", "password"},
    values.BearerAuth: {"type", "token"},
    values.HeaderAuth: {"type", "header", "value"},
    values.OAuth2Auth: {"type", "token_url", "client_id", "client_secret", "scope"},
    values.NoAuth: {"type"},
    schema.SlackSink: _SINK | {"token", "webhook_url", "channel", "mode", "signing_secret",
                               "actions", "base_url"},
    schema.WebhookSink: _SINK | {"url", "secret", "headers", "body"},
    schema.Rule: {"name", "on", "source", "from", "to", "when", "template", "notify",
                  "throttle", "repeat", "continue", "priority", "mute_during",
                  "active_during", "group_by", "group_wait", "group_interval",
                  "group_template"},
    Window: {"name", "days", "start", "end", "timezone", "sources"},
    schema.RuleTest: {"name", "event", "expect"},
    schema.Expectation: {"sink", "contains"},
    # Tables that are extensions as a whole: every key of theirs must be documented.
    schema.RetryPolicy: set(),
    schema.SlackRateLimits: set(),
    SilenceReminder: set(),
}


def _keys(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _extensions() -> list[tuple[str, str]]:
    return sorted((model.__name__, key) for model, named in CONTRACT_KEYS.items()
                  for key in _keys(model) - named)


def _code_of(markdown: str) -> str:
    """The text of a Markdown page's code: fenced blocks (indented fences too), and
    backtick spans in the prose between them."""
    fenced, prose, inside = [], [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            fenced.append(line)
        else:
            prose.append(line)
    return " ".join(fenced + re.findall(r"`([^`]+)`", "\n".join(prose)))


def test_the_contract_keys_listed_here_are_keys_bridge_accepts() -> None:
    # A key the contract names must never be renamed away.
    missing = sorted((model.__name__, key) for model, named in CONTRACT_KEYS.items()
                     for key in named - _keys(model))
    assert missing == []


@pytest.mark.parametrize("doc", ["docs/extensions.md", "README.md"])
def test_every_config_key_beyond_the_contract_is_documented(doc: str) -> None:
    # What the document shows as code: fenced blocks, and spans like `key`,
    # `[bridge] key`, `retry = { attempts, ... }`.
    code = _code_of((ROOT / doc).read_text(encoding="utf-8"))
    undocumented = [f"{table}.{key}" for table, key in _extensions()
                    if not re.search(rf"(?<![\w.-]){re.escape(key)}(?![\w-])", code)]
    assert undocumented == [], f"{doc} names none of these extensions: {undocumented}"
