"""rules.toml loading: strict keys, durations, ${VAR} interpolation, errors with file:line."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config import parse_config
from bridge.config.schema import EsalesSource, JtlSource, WebhookSink, parse_duration
from bridge.errors import ConfigErrors

MINIMAL = """
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.com"
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", env or {})
    return [e.render() for e in caught.value.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("PT30S", timedelta(seconds=30)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        (15, timedelta(seconds=15)),
    ],
)
def test_durations_parse_in_short_and_iso_forms(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "30", "P", "-5s", "5 minutes", True])
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_minimal_config_gets_contract_defaults() -> None:
    config = parse_config(MINIMAL, "/etc/bridge/rules.toml", {})
    source = config.sources[0]
    assert source.interval == timedelta(seconds=30)
    assert source.timeout == timedelta(seconds=10)
    assert source.stall_after == timedelta(minutes=15)
    assert config.bridge.listen == "127.0.0.1:8080"
    assert config.bridge.templates == "/etc/bridge/templates"
    assert config.bridge.state == "sqlite:////etc/bridge/bridge-state.db"


def test_env_variables_are_interpolated_with_defaults() -> None:
    text = """
[[sinks]]
name = "pager"
kind = "webhook"
url = "${HOOK_URL}"
secret = "${HOOK_SECRET:-whsec_abc}"
"""
    config = parse_config(text, "rules.toml", {"HOOK_URL": "https://hooks.example.com/x"})
    sink = config.sinks[0]
    assert isinstance(sink, WebhookSink)
    assert sink.url.get_secret_value() == "https://hooks.example.com/x"
    assert sink.secret is not None and sink.secret.get_secret_value() == "whsec_abc"


def test_unset_env_variable_is_an_error_naming_it() -> None:
    text = MINIMAL + '[sources.auth]\ntype = "bearer"\ntoken = "${ZENDESK_TOKEN}"\n'
    (message,) = errors_of(text)
    assert message.startswith("rules.toml:8: sources[0].auth.token:")
    assert "ZENDESK_TOKEN is not set" in message


def test_unknown_key_suggests_the_closest_known_one() -> None:
    (message,) = errors_of(MINIMAL + 'intervall = "30s"\n')
    assert message == (
        "rules.toml:6: sources[0].intervall: unknown key 'intervall'; did you mean 'interval'?"
    )


@pytest.mark.parametrize(("auth", "typo", "meant"), [
    ('type = "bearer"\ntoken = "t"\n', "tokn", "token"),
    ('type = "basic"\nusername = "u/token"\npassword = "p"\n', "pasword", "password"),
    ('type = "oauth2"\nclient_id = "c"\nclient_secret = "s"\n', "scop", "scope"),
    ('type = "header"\nheader = "X-Key"\nvalue = "v"\n', "heder", "header"),
])
def test_unknown_auth_key_suggests_the_closest_key_of_that_auth_type(
        auth: str, typo: str, meant: str) -> None:
    messages = errors_of(MINIMAL + "[sources.auth]\n" + auth + f'{typo} = "x"\n')
    assert f"sources[0].auth.{typo}: unknown key {typo!r}; did you mean {meant!r}?" in (
        " ".join(messages))


def test_unknown_source_kind_lists_the_known_ones() -> None:
    (message,) = errors_of('[[sources]]\nname = "x"\nkind = "zendeks"\n')
    assert "rules.toml:3: sources[0].kind: unknown source kind 'zendeks'" in message
    assert "did you mean 'zendesk'" in message


def test_esales_ids_stay_strings_even_when_written_as_integers() -> None:
    text = """
[[sources]]
name = "esales"
kind = "esales"
base_url = "https://c1.api.esales.apptus.cloud"
api_key = "k"
ids = [5537431447739019570, "5537431447739019571"]
"""
    source = parse_config(text, "rules.toml", {}).sources[0]
    assert isinstance(source, EsalesSource)
    assert source.ids == ["5537431447739019570", "5537431447739019571"]


def test_jtl_source_reads_its_tenant_settings() -> None:
    text = '[[sources]]\nname = "jtl"\nkind = "jtl"\ntenant_id = "t-1"\napp_id = "Acme/1.0"\n'
    source = parse_config(text, "rules.toml", {}).sources[0]
    assert isinstance(source, JtlSource)
    assert (source.tenant_id, source.app_id) == ("t-1", "Acme/1.0")


def test_duplicate_source_names_are_an_error() -> None:
    messages = errors_of(MINIMAL + MINIMAL)
    assert any("duplicate name 'zendesk'" in m for m in messages)


def test_rule_naming_an_unknown_sink_is_an_error() -> None:
    text = MINIMAL + """
[[sinks]]
name = "pager"
kind = "webhook"
url = "https://x"

[[rules]]
name = "r"
on = "transition"
template = "t.j2"
notify = ["pagr"]
"""
    (message,) = errors_of(text)
    assert "rules[0].notify[0]: unknown sink 'pagr'; did you mean 'pager'?" in message


def test_secrets_are_not_printed_in_errors() -> None:
    text = MINIMAL + '[sources.auth]\ntype = "bearer"\ntoken = "s3cr3t-token"\nextra = 1\n'
    messages = errors_of(text)
    assert messages and all("s3cr3t-token" not in m for m in messages)


FOUR_PROBLEMS = """\
[bridge]
listen = "127.0.0.1:8080"

[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.com"
intervall = "30s"

[[sources]]
name = "terminal"
kind = "terminal"
connection_token = "${TERMINAL_CONNECTION_TOKEN}"

[[sources]]
name = "jtl"
kind = "jtl"
tenant_id = "t"
interval = "every now and then"

[[sources]]
name = "exports"
kind = "ftp"
"""


def test_check_reports_every_problem_with_file_path_and_line(tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(FOUR_PROBLEMS)
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{config}:8: sources[0].intervall: unknown key 'intervall'; did you mean 'interval'?" \
        in lines
    assert any(line.startswith(f"{config}:13: sources[1].connection_token: environment variable "
                               "TERMINAL_CONNECTION_TOKEN is not set") for line in lines)
    assert any(line.startswith(f"{config}:19: sources[2].interval: expected a duration")
               for line in lines)
    assert any(line.startswith(f"{config}:23: sources[3].kind: unknown source kind 'ftp'")
               for line in lines)
