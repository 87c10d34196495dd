"""Config mistakes a newcomer makes, each refused by `check` and `run` alike with one
`file:line: path: message` line that says what to write instead (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main

SLACK = """
[[sinks]]
name = "ops-slack"
kind = "slack"
token = "xoxb-1234567890-abcdefghij"
channel = "#ops-alerts"
"""
RULE = """
[[rules]]
name = "job-failed"
on = "transition"
to = "failed"
template = "transition.slack.j2"
notify = "ops-slack"
"""


def problems(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str],
             command: str = "check") -> list[str]:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    assert main([command, "--config", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].endswith("problem(s) found")
    return [line.removeprefix(f"{path}:") for line in err[:-1]]


def test_a_broken_jmespath_is_refused_by_check_and_by_run_before_the_state_file_exists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = f"""[bridge]
state = "sqlite:///state.db"

[[sources]]
name = "exports"
kind = "http"
url = "https://api.example.com/jobs"
items = "data[*"
{SLACK}{RULE}"""
    expected = ["8: sources[0].items: invalid JMESPath expression 'data[*': incomplete "
                "expression (an unclosed bracket or quote?) at character 6 "
                "(see https://jmespath.org/tutorial.html)"]
    assert problems(tmp_path, text, capsys) == expected
    assert problems(tmp_path, text, capsys, command="run") == expected
    assert not (tmp_path / "state.db").exists()


def test_urls_need_a_scheme_and_a_host_and_a_secret_url_is_never_quoted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = f"""
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "127.0.0.1:9"

[[sinks]]
name = "hook"
kind = "slack"
webhook_url = "notaurl-but-secret"

[[sinks]]
name = "pager"
kind = "webhook"
url = "ftp://hooks.example.com/x"
{RULE.replace('"ops-slack"', '"hook"')}"""
    assert problems(tmp_path, text, capsys) == [
        "5: sources[0].base_url: expected an http(s) URL like 'https://{subdomain}.zendesk.com';"
        " '127.0.0.1:9' has no scheme: write 'https://127.0.0.1:9'",
        "10: sinks[0].webhook_url: expected an http(s) URL like "
        "'https://hooks.slack.com/services/T…/B…/…'; the value has no scheme",
        "15: sinks[1].url: expected an http(s) URL like 'https://hooks.example.com/bridge'; "
        "the value uses 'ftp' (only http and https)",
    ]


def test_a_relative_http_url_is_valid_under_a_base_url_and_refused_without_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = """
[[sources]]
name = "exports"
kind = "http"
{base}url = "/exports"
"""
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "rules.toml").write_text(
        source.format(base='base_url = "https://api.example.com"\n') + SLACK + RULE)
    assert main(["check", "--config", str(ok / "rules.toml")]) == 0
    capsys.readouterr()
    assert problems(tmp_path, source.format(base="") + SLACK + RULE, capsys) == [
        "5: sources[0].url: a relative url needs 'base_url' too (or write a full URL like "
        "'https://api.example.com/jobs')"]


def test_a_zendesk_username_without_token_suffix_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = f"""
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.com"
[sources.auth]
type = "basic"
username = "ops@acme.com"
password = "zendesk-api-token-123456"
{SLACK}{RULE}"""
    assert problems(tmp_path, text, capsys) == [
        "6: sources[0].auth: Zendesk API token login needs the username 'EMAIL/token' "
        "(like 'you@example.com/token'), got 'ops@acme.com': append /token"]


def test_a_type_error_is_one_line_with_an_example_and_no_follow_on_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SLACK.replace('"#ops-alerts"', '["#ops-alerts"]') + RULE + """
[[rules]]
name = "typo"
on = "transiton"
template = "transition.slack.j2"
notify = "ops-slack"

[[rules]]
name = "misspelt-sink"
on = "stalled"
template = "stalled.slack.j2"
notify = "ops-slak"
"""
    # The rule naming the broken sink 'ops-slack' gets no "unknown sink"; a misspelt name
    # still does, with the broken sink among the names it could have meant.
    assert problems(tmp_path, text, capsys) == [
        '6: sinks[0].channel: expected a string like channel = "#ops-alerts", got a list: '
        "one value, not a list (drop the brackets)",
        "17: rules[1].on: expected one of 'transition', 'progress', 'stalled', 'appeared', "
        "'vanished', 'source_down' or 'source_up'; did you mean 'transition'?",
        "25: rules[2].notify: unknown sink 'ops-slak'; did you mean 'ops-slack'? "
        "(defined: ops-slack)",
    ]


def test_a_slack_sink_with_both_token_and_webhook_url_is_told_to_choose_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SLACK.replace('channel =', 'webhook_url = "https://hooks.slack.com/services/T/B/x"\n'
                         'channel =') + RULE
    expected = ["2: sinks[0]: give 'token' or 'webhook_url', not both: choose 'token' for the "
                "Web API (chat.postMessage, edit in place, threads), or 'webhook_url' for an "
                "incoming webhook (post only)"]
    assert problems(tmp_path, text, capsys) == expected
    assert problems(tmp_path, text, capsys, command="run") == expected
