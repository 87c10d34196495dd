"""`bridge check`, `bridge test` and `bridge render`: exit codes and what they print."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.checks import check, render_event, run_tests
from bridge.cli import main as cli_main
from bridge.config import load_config
from bridge.config.schema import Config
from bridge.resources import bundled_templates

HEAD = """\
[bridge]
templates = "templates"

[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.invalid"

[[sinks]]
name = "ops-slack"
kind = "slack"
webhook_url = "https://hooks.slack.invalid/x"

[[sinks]]
name = "pager"
kind = "webhook"
url = "https://hooks.example.invalid/bridge"
"""

FAILED_RULE = """
[[rules]]
name = "job-failed"
on = "transition"
to = ["failed", "cancelled"]
template = "failed.slack.j2"
notify = ["ops-slack", "pager"]
"""

FAILED_TEMPLATE = "❌ {{ source }} job {{ job.id }} {{ to }}: {{ job.message }}"

Write = Callable[..., Config]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write rules.toml and templates into a fresh folder and load it."""

    def make(toml: str, **templates: str) -> Config:
        folder = tmp_path / "templates"
        folder.mkdir(exist_ok=True)
        for name, text in templates.items():
            (folder / name).write_text(text, encoding="utf-8")
        path = tmp_path / "rules.toml"
        path.write_text(toml, encoding="utf-8")
        return load_config(path, env={})

    return make


def run(command: Callable[[Config, io.StringIO], int], config: Config) -> tuple[int, str]:
    out = io.StringIO()
    code = command(config, out)
    return code, out.getvalue()


def line_of(config: Config, needle: str, occurrence: int = 1) -> int:
    lines = Path(config.path).read_text(encoding="utf-8").splitlines()
    hits = [i for i, line in enumerate(lines, start=1) if needle in line]
    return hits[occurrence - 1]


# --- bridge check ---------------------------------------------------------------------------


DOWN_RULE = """
[[rules]]
name = "source-down"
on = "source_down"
template = "source_down.slack.j2"
notify = ["ops-slack"]
"""


def test_check_of_a_clean_config_says_ok(write: Write) -> None:
    config = write(HEAD + FAILED_RULE + DOWN_RULE, **{"failed.slack.j2": FAILED_TEMPLATE,
                                                      "other.j2": "{{ source }}"})
    assert run(check, config) == (0, "ok: 1 sources, 2 sinks, 2 rules, 2 templates\n"
                                  "bundled templates used (not in "
                                  f"{config.bridge.templates}): source_down.slack.j2\n")


def test_check_warns_without_failing_when_no_rule_reports_a_source_going_down(
        write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 0
    warning, ok = out.splitlines()
    assert warning.startswith(f"{config.path}:{line_of(config, '[[sources]]')}: sources[0]: "
                              "warning: no rule has on = \"source_down\" for source 'zendesk'")
    assert 'on = "source_down", template = "source_down.slack.j2"' in warning
    assert ok == "ok: 1 sources, 2 sinks, 1 rules, 1 templates"


def test_check_reports_a_missing_template_at_the_rules_line(write: Write) -> None:
    config = write(HEAD + FAILED_RULE)
    code, out = run(check, config)
    assert code == 1
    line = line_of(config, 'template = "failed.slack.j2"')
    assert out.startswith(f"{config.path}:{line}: rules[0].template: failed.slack.j2: "
                          "no such template 'failed.slack.j2'")


def test_check_reports_an_undefined_variable_with_template_line(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": "ok\n{{ jobb.id }}"})
    code, out = run(check, config)
    assert code == 1
    assert "rules[0].template: failed.slack.j2:2: undefined: 'jobb' is undefined" in out
    assert "1 problem\n" in out


def test_check_reports_a_template_syntax_error(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": "{% if job %}\nno end"})
    code, out = run(check, config)
    assert code == 1
    assert "rules[0].template: failed.slack.j2:2: syntax error" in out


def test_check_reports_a_when_that_does_not_compile(write: Write) -> None:
    rule = FAILED_RULE.replace('to = ["failed", "cancelled"]', 'when = "job.progress <"')
    config = write(HEAD + rule, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 1
    line = line_of(config, "when =")
    assert f"{config.path}:{line}: rules[0].when: " in out
    assert "does not compile" in out


def test_check_reports_a_when_that_fails_on_a_sample_event(write: Write) -> None:
    rule = FAILED_RULE.replace('to = ["failed", "cancelled"]', 'when = "jobb.progress < 100"')
    config = write(HEAD + rule, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 1
    assert ("rules[0].when: `when` 'jobb.progress < 100': unknown name 'jobb'; did you mean "
            "'job'? (names: at, duration, event, first_seen, from, job, on, previous, reason, "
            "rule, source, to) (on a sample transition event)") in out


@pytest.mark.parametrize(("when", "message"), [
    ("job.progress = 100", "`when` 'job.progress = 100' does not compile: = is not a "
     "comparison, use == (write 'job.progress == 100')"),
    ("job.progres == 100", "`when` 'job.progres == 100': job has no field 'progres'; did you "
     "mean 'progress'? (job fields: id, state, raw_state, progress, message, url, fields, "
     "failed_items, run, run_key, due_at, name) (on a sample transition event)"),
    ("to == failed", "`when` 'to == failed': unknown name 'failed': a state is text, quote it "
     "(\"to == 'failed'\") (on a sample transition event)"),
])
def test_check_explains_a_when_in_the_words_of_a_rule(write: Write, when: str,
                                                       message: str) -> None:
    rule = FAILED_RULE.replace('to = ["failed", "cancelled"]', f'when = "{when}"')
    config = write(HEAD + rule, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 1
    assert out.splitlines()[0] == (f"{config.path}:{line_of(config, 'when =')}: rules[0].when: "
                                   f"{message}")


def test_check_renders_against_a_sample_of_the_rules_event_kind(write: Write) -> None:
    # Fine for job events, but source events carry no job.
    rule = FAILED_RULE.replace('on = "transition"\nto = ["failed", "cancelled"]',
                               'on = "source_down"')
    config = write(HEAD + rule, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 1
    assert "sample source_down event for sink 'ops-slack'" in out


def test_check_reports_syntax_errors_in_templates_no_rule_uses(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": FAILED_TEMPLATE,
                                          "spare.j2": "a\nb\n{{ job.id }"})
    code, out = run(check, config)
    assert code == 1
    folder = Path(config.bridge.templates)
    assert f"{folder / 'spare.j2'}:3: syntax error" in out


def test_check_reports_a_body_template_that_is_not_json(write: Write) -> None:
    toml = HEAD + 'body = "body.json.j2"\n' + FAILED_RULE
    config = write(toml, **{"failed.slack.j2": FAILED_TEMPLATE,
                            "body.json.j2": '{"summary": {{ text }}}'})
    code, out = run(check, config)
    assert code == 1
    line = line_of(config, 'body = "body.json.j2"')
    assert f"{config.path}:{line}: sinks[1].body: body.json.j2: body is not valid JSON" in out


def test_check_reports_a_missing_body_template_of_a_sink_no_rule_uses(write: Write) -> None:
    toml = HEAD + 'body = "nope.json.j2"\n' + FAILED_RULE.replace('"ops-slack", "pager"',
                                                                 '"ops-slack"')
    config = write(toml, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 1
    assert "sinks[1].body: nope.json.j2: no such template 'nope.json.j2'" in out


def test_check_reports_a_missing_templates_folder(write: Write, tmp_path: Path) -> None:
    config = write(HEAD + FAILED_RULE)
    shutil.rmtree(tmp_path / "templates")
    code, out = run(check, config)
    assert code == 1
    assert "bridge.templates: templates folder" in out


def test_check_accepts_a_missing_templates_folder_when_the_rules_use_bundled_templates(
        write: Write, tmp_path: Path) -> None:
    config = write(HEAD + FAILED_RULE.replace("failed.slack.j2", "transition.slack.j2")
                   + DOWN_RULE)
    shutil.rmtree(tmp_path / "templates")
    code, out = run(check, config)
    assert (code, out) == (0, "ok: 1 sources, 2 sinks, 2 rules, 0 templates\n"
                              f"bundled templates used (not in {tmp_path / 'templates'}): "
                              "source_down.slack.j2, transition.slack.j2\n")


def test_a_template_in_the_folder_overrides_the_bundled_one_of_that_name(
        write: Write, tmp_path: Path) -> None:
    rules = (FAILED_RULE.replace("failed.slack.j2", "transition.slack.j2")
             + FAILED_RULE.replace("job-failed", "job-stalled").replace(
                 'on = "transition"\nto = ["failed", "cancelled"]', 'on = "stalled"').replace(
                 "failed.slack.j2", "stalled.slack.j2"))
    config = write(HEAD + rules, **{"transition.slack.j2": "OURS {{ job.id }}"})
    code, out = run(check, config)
    assert code == 0, out
    assert out.endswith(f"bundled templates used (not in {tmp_path / 'templates'}): "
                        "stalled.slack.j2\n")
    event = {"on": "transition", "source": "zendesk", "from": "running", "to": "failed",
             "job": {"id": "8b72", "state": "failed"}}
    code, out = run(lambda c, o: render_event(c, "job-failed", event, o), config)
    assert code == 0, out
    assert "OURS 8b72" in out
    bundled = (bundled_templates() / "transition.slack.j2").read_text(encoding="utf-8")
    assert "OURS" not in bundled


def test_check_reports_an_unknown_timezone(write: Write) -> None:
    toml = HEAD.replace('templates = "templates"',
                        'templates = "templates"\ntimezone = "Mars/Olympus"')
    config = write(toml + FAILED_RULE, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(check, config)
    assert code == 1
    assert "bridge.timezone: unknown timezone 'Mars/Olympus'" in out


def test_check_exits_1_for_an_unknown_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           ) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "failed.slack.j2").write_text(FAILED_TEMPLATE, encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(HEAD + FAILED_RULE.replace('"pager"]', '"pagr"]'), encoding="utf-8")
    assert cli_main(["check", "--config", str(path)]) == 1
    assert "unknown sink 'pagr'" in capsys.readouterr().err


def test_check_passes_on_the_projects_default_templates(write: Write, tmp_path: Path) -> None:
    defaults = bundled_templates()
    rules = "".join(
        f'\n[[rules]]\nname = "{kind}-{flavor}"\non = "{kind}"\ntemplate = "{kind}.{flavor}.j2"\n'
        f'notify = ["ops-slack", "pager"]\ncontinue = true\n'
        for kind in ("transition", "progress", "stalled", "appeared", "vanished",
                     "source_down", "source_up")
        for flavor in ("slack", "blocks")
    )
    toml = HEAD.replace('templates = "templates"', f"templates = {json.dumps(str(defaults))}")
    config = write(toml + 'body = "pagerduty.json.j2"\n' + rules)
    code, out = run(check, config)
    assert (code, out) == (0, out)
    assert out.startswith("ok: 1 sources, 2 sinks, 14 rules, ")


# --- bridge test ----------------------------------------------------------------------------

TEST_FAILED = """
[[tests]]
name = "a failed zendesk job pages"
expect = [ { sink = "ops-slack", contains = "Printer on fire" }, { sink = "pager" } ]
[tests.event]
on = "transition"
source = "zendesk"
from = "running"
to = "failed"
[tests.event.job]
id = "8b72"
state = "failed"
raw_state = "failed"
progress = 40
message = "Printer on fire"
"""


def test_run_tests_passes_on_a_good_expectation(write: Write) -> None:
    config = write(HEAD + FAILED_RULE + TEST_FAILED, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(run_tests, config)
    assert code == 0
    assert out.splitlines()[0] == "PASS  a failed zendesk job pages"
    assert "1 passed, 0 failed" in out


def test_run_tests_fails_with_a_diff_on_a_wrong_expectation(write: Write) -> None:
    wrong = TEST_FAILED.replace('contains = "Printer on fire"', 'contains = "Printer on ice"')
    config = write(HEAD + FAILED_RULE + wrong, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(run_tests, config)
    assert code == 1
    # The cause sits under the lines it is about, inside the diff (issue 15).
    assert out.splitlines()[:8] == [
        "FAIL  a failed zendesk job pages",
        "      --- expected",
        "      +++ got",
        "      -[ops-slack] (contains 'Printer on ice')",
        "         ^ ops-slack: no notification containing 'Printer on ice'",
        "      -[pager] (any message)",
        "      +[ops-slack] ❌ zendesk job 8b72 failed: Printer on fire",
        "         ^ ops-slack: unexpected notification from rule job-failed (no expectation "
        "took it)",
    ]


def test_run_tests_diffs_text_line_by_line_for_equals(write: Write) -> None:
    template = "{{ job.id }} {{ to }}\nPrinter on fire"
    test = """
[[tests]]
name = "exact text"
event = { on = "transition", from = "running", to = "failed", job.id = "8b72" }
expect = [ { sink = "ops-slack", equals = "8b72 failed\\nPrinter on ice" }, { sink = "pager" } ]
"""
    config = write(HEAD + FAILED_RULE + test, **{"failed.slack.j2": template})
    code, out = run(run_tests, config)
    assert code == 1
    assert " [ops-slack] 8b72 failed\n" in out
    assert "-[ops-slack] Printer on ice\n" in out
    assert "+[ops-slack] Printer on fire\n" in out


def test_run_tests_empty_expect_means_no_notification(write: Write) -> None:
    test = """
[[tests]]
name = "success is quiet"
event = { on = "transition", from = "running", to = "succeeded" }
expect = []
"""
    config = write(HEAD + FAILED_RULE + test, **{"failed.slack.j2": FAILED_TEMPLATE})
    assert run(run_tests, config) == (0, "PASS  success is quiet\n\n1 passed, 0 failed\n")


def test_run_tests_empty_expect_fails_when_something_notifies(write: Write) -> None:
    test = """
[[tests]]
name = "failure should be quiet (it is not)"
event = { on = "transition", from = "running", to = "failed" }
expect = []
"""
    config = write(HEAD + FAILED_RULE + test, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(run_tests, config)
    assert code == 1
    assert "   ^ ops-slack: unexpected notification from rule job-failed" in out
    assert "   ^ pager: unexpected notification from rule job-failed" in out


def test_run_tests_checks_not_contains(write: Write) -> None:
    test = TEST_FAILED.replace('contains = "Printer on fire"', 'not_contains = "Printer"')
    config = write(HEAD + FAILED_RULE + test, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(run_tests, config)
    assert code == 1
    assert "no notification without 'Printer'" in out


def test_run_tests_reports_a_template_error_as_a_failure(write: Write) -> None:
    config = write(HEAD + FAILED_RULE + TEST_FAILED, **{"failed.slack.j2": "{{ nope }}"})
    code, out = run(run_tests, config)
    assert code == 1
    assert "rule job-failed: template failed for sink ops-slack: failed.slack.j2:1" in out


def test_run_tests_reports_an_invalid_event(write: Write) -> None:
    test = """
[[tests]]
name = "bad state"
event = { on = "transition", to = "exploded" }
expect = []
"""
    config = write(HEAD + FAILED_RULE + test, **{"failed.slack.j2": FAILED_TEMPLATE})
    code, out = run(run_tests, config)
    assert code == 1
    assert "FAIL  bad state\n      not a valid event: 'exploded' is not a valid JobState" in out


def test_run_tests_uses_fresh_memory_so_throttle_does_not_leak_between_tests(
    write: Write,
) -> None:
    rule = FAILED_RULE + 'throttle = "1h"\n'
    second = TEST_FAILED.replace("a failed zendesk job pages", "again")
    config = write(HEAD + rule + TEST_FAILED + second, **{"failed.slack.j2": FAILED_TEMPLATE})
    assert run(run_tests, config)[0] == 0


# --- bridge render --------------------------------------------------------------------------

EVENT = {"on": "transition", "from": "running", "to": "failed",
         "job": {"id": "8b72", "message": "Printer on fire"}}


def test_render_prints_each_sinks_payload_without_sending(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": FAILED_TEMPLATE})
    out = io.StringIO()
    assert render_event(config, "job-failed", EVENT, out) == 0
    text = out.getvalue()
    assert "── ops-slack (slack) ──\n❌ zendesk job 8b72 failed: Printer on fire\n" in text
    assert '"type": "job.transition"' in text
    assert text.endswith("(nothing was sent)\n")


def test_render_says_when_the_rule_would_not_match(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": FAILED_TEMPLATE})
    out = io.StringIO()
    event = {**EVENT, "to": "succeeded"}
    assert render_event(config, "job-failed", event, out) == 0
    assert ("note: rule job-failed: FILTERED by to: succeeded not in [failed, cancelled]; "
            "this rule would not notify") in out.getvalue()


def test_render_of_an_unknown_rule_exits_1(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": FAILED_TEMPLATE})
    out = io.StringIO()
    assert render_event(config, "job-faild", EVENT, out) == 1
    assert "no rule named 'job-faild' (rules: job-failed)" in out.getvalue()


def test_render_reports_a_template_error_and_exits_1(write: Write) -> None:
    config = write(HEAD + FAILED_RULE, **{"failed.slack.j2": "{{ jobb }}"})
    out = io.StringIO()
    assert render_event(config, "job-failed", EVENT, out) == 1
    assert "error: failed.slack.j2:1: undefined" in out.getvalue()
