"""`bridge init`: a commented starter `rules.toml` and the templates it uses, in one folder.

The config names each credential as a `${VAR}` placeholder (nothing secret is ever written)
and the command prints the variables to set, what each one is and where the vendor's admin
shows it, then the next commands: `bridge check --online`, `bridge notify-test`, `bridge run`.
Existing files are never overwritten without `--force`; with any of them in the way,
nothing at all is written.

The snippets are data (`SOURCES`, `SINKS`): a new kind is one entry here.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bridge.errors import BridgeError
from bridge.resources import bundled_templates

CONFIG_NAME = "rules.toml"
TEMPLATES_DIR = "templates"


class InitRefused(BridgeError):
    """`bridge init` would overwrite files (and `--force` was not given)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable:
    name: str
    what: str
    optional: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Snippet:
    """One `[[sources]]` or `[[sinks]]` table with the variables it reads."""

    name: str
    toml: str
    variables: tuple[Variable, ...]


SOURCES: dict[str, Snippet] = {
    "zendesk": Snippet(name="zendesk", toml='''\
# Zendesk job statuses (bulk imports, updates, deletes). Create the API token in
# Admin Center > Apps and integrations > APIs > Zendesk API: turn on "Token access",
# "Add API token". The username is the agent's email followed by "/token".
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "${ZENDESK_URL}"           # https://{subdomain}.zendesk.com
interval = "30s"
[sources.auth]
type = "basic"
username = "${ZENDESK_EMAIL}/token"
password = "${ZENDESK_API_TOKEN}"
''', variables=(
        Variable(name="ZENDESK_URL", what="https://{subdomain}.zendesk.com"),
        Variable(name="ZENDESK_EMAIL", what="the email of the agent who owns the API token"),
        Variable(name="ZENDESK_API_TOKEN", what="Admin Center > Apps and integrations > APIs > "
                 "Zendesk API > Add API token"),
    )),
    "jtl": Snippet(name="jtl", toml='''\
# JTL Cloud ERP worker syncs. Register an app in the JTL developer portal to get a
# client_id and client_secret (OAuth2 client credentials); the tenant id is your
# JTL-Wawi cloud tenant. app_id/app_version are sent as x-appid/x-appversion
# (defaults "bridge/0.1.0" and "0.1.0"; set them to what your app was registered as).
[[sources]]
name = "jtl"
kind = "jtl"
base_url = "${JTL_URL:-https://api.jtl-cloud.com/erp}"
tenant_id = "${JTL_TENANT_ID}"
# app_id = "bridge/0.1.0"
# app_version = "0.1.0"
interval = "1m"
[sources.auth]
type = "oauth2"
token_url = "${JTL_TOKEN_URL:-https://auth.jtl-cloud.com/oauth2/token}"
client_id = "${JTL_CLIENT_ID}"
client_secret = "${JTL_CLIENT_SECRET}"
''', variables=(
        Variable(name="JTL_TENANT_ID", what="your JTL-Wawi cloud tenant id (x-tenant-id)"),
        Variable(name="JTL_CLIENT_ID", what="the OAuth2 client id of your JTL app"),
        Variable(name="JTL_CLIENT_SECRET", what="the OAuth2 client secret of your JTL app"),
        Variable(name="JTL_URL", what="default https://api.jtl-cloud.com/erp", optional=True),
        Variable(name="JTL_TOKEN_URL", what="default https://auth.jtl-cloud.com/oauth2/token",
                 optional=True),
    )),
    "terminal": Snippet(name="terminal", toml='''\
# Terminal telematics syncs. The API key is in the Terminal dashboard (Developers > API
# keys); the connection token belongs to one connected fleet account (Connections).
[[sources]]
name = "terminal"
kind = "terminal"
base_url = "${TERMINAL_URL:-https://api.withterminal.com/tsp/v1}"
connection_token = "${TERMINAL_CONNECTION_TOKEN}"
interval = "1m"
[sources.auth]
type = "bearer"
token = "${TERMINAL_API_KEY}"
''', variables=(
        Variable(name="TERMINAL_API_KEY", what="Terminal dashboard > Developers > API keys"),
        Variable(name="TERMINAL_CONNECTION_TOKEN", what="the connection token of one account"),
        Variable(name="TERMINAL_URL", what="default https://api.withterminal.com/tsp/v1",
                 optional=True),
    )),
    "esales": Snippet(name="esales", toml='''\
# Voyado eSales imports. The cluster URL and an admin API key come from the eSales
# admin (Settings > API keys). eSales has no list of imports: give the import ids in
# `ids`, or add them later with `bridge watch esales ID`.
[[sources]]
name = "esales"
kind = "esales"
base_url = "${ESALES_URL}"            # https://{cluster-id}.api.esales.apptus.cloud
api_key = "${ESALES_API_KEY}"
ids = []
interval = "1m"
''', variables=(
        Variable(name="ESALES_URL", what="https://{cluster-id}.api.esales.apptus.cloud"),
        Variable(name="ESALES_API_KEY", what="an eSales admin API key"),
    )),
    "http": Snippet(name="jobs", toml='''\
# Any JSON job-status endpoint. `items` selects the list of jobs (JMESPath); `id`,
# `state`, `progress`, `message` are read from each item. Map your API's states to
# bridge's (pending, running, blocked, succeeded, failed, cancelled) under `states`.
[[sources]]
name = "jobs"
kind = "http"
base_url = "${JOBS_URL}"              # https://api.example.com
url = "/jobs"
items = "data[*]"
id = "id"
state = "status"
# progress = "percent"
# message = "error.message"
interval = "30s"
states = { done = "succeeded", error = "failed" }
[sources.auth]
type = "bearer"
token = "${JOBS_API_TOKEN}"
''', variables=(
        Variable(name="JOBS_URL", what="the API's base URL, like https://api.example.com"),
        Variable(name="JOBS_API_TOKEN", what="a bearer token for the API"),
    )),
    "push": Snippet(name="pushed", toml='''\
# Jobs pushed to POST /v1/events/pushed, signed like Standard Webhooks with `secret`.
# Make a secret:
#   python -c "import base64, os; print('whsec_' + base64.b64encode(os.urandom(24)).decode())"
[[sources]]
name = "pushed"
kind = "push"
secret = "${PUSH_SECRET}"
id = "id"
state = "status"
''', variables=(
        Variable(name="PUSH_SECRET", what="whsec_… (see the comment in rules.toml)"),
    )),
}

SINKS: dict[str, Snippet] = {
    "slack": Snippet(name="ops-slack", toml='''\
# Slack through a bot token (see the README: "Slack app in five steps"). The bot needs
# the scopes chat:write and chat:write.public (or invite it: /invite @yourbot), and
# channels:read for `bridge check --online` to look at the channel.
[[sinks]]
name = "ops-slack"
kind = "slack"
token = "${SLACK_BOT_TOKEN}"
channel = "${SLACK_CHANNEL:-#ops-alerts}"
mode = "update"                       # one message per job, edited; failures add a reply
# Slack's API; a test against a fake Slack or a proxy sets SLACK_API_URL.
base_url = "${SLACK_API_URL:-https://slack.com/api/}"
''', variables=(
        Variable(name="SLACK_BOT_TOKEN", what="xoxb-… from your Slack app's "
                 "OAuth & Permissions page"),
        Variable(name="SLACK_CHANNEL", what="default #ops-alerts", optional=True),
    )),
    "webhook": Snippet(name="ops-webhook", toml='''\
# Outgoing webhooks signed like Standard Webhooks (webhook-id, webhook-timestamp,
# webhook-signature); the event catalog for receivers: `bridge schema --markdown`.
[[sinks]]
name = "ops-webhook"
kind = "webhook"
url = "${WEBHOOK_URL}"
secret = "${WEBHOOK_SECRET}"
''', variables=(
        Variable(name="WEBHOOK_URL",
                 what="your receiver's URL, like https://hooks.example.com/bridge"),
        Variable(name="WEBHOOK_SECRET", what="whsec_… shared with the receiver: python -c "
                 "\"import base64, os; print('whsec_' + base64.b64encode(os.urandom(24))"
                 ".decode())\""),
    )),
}

# (template, rule table) in the order they are tried: the first match wins.
RULES: tuple[tuple[str, str], ...] = (
    ("transition.slack.j2", '''\
# A job ended badly. `throttle`: at most one message per job and rule in 10 minutes.
[[rules]]
name = "job-failed"
on = "transition"
to = ["failed", "cancelled", "blocked"]
template = "transition.slack.j2"
notify = {notify}
throttle = "10m"

# A job finished. Delete this rule if successes are noise for you.
[[rules]]
name = "job-succeeded"
on = "transition"
to = "succeeded"
template = "transition.slack.j2"
notify = {notify}
'''),
    ("stalled.slack.j2", '''\
# No change for `stall_after` (default 15m) while running; repeated every hour.
[[rules]]
name = "job-stalled"
on = "stalled"
template = "stalled.slack.j2"
notify = {notify}
repeat = "1h"
'''),
    ("source_down.slack.j2", '''\
# Wrong credentials or an API that stopped answering: without this rule nobody hears.
[[rules]]
name = "source-down"
on = "source_down"
template = "source_down.slack.j2"
notify = {notify}

[[rules]]
name = "source-up"
on = "source_up"
template = "source_up.slack.j2"
notify = {notify}
'''),
    ("source_up.slack.j2", ""),
)

HEADER = '''\
# rules.toml written by `bridge init`. Every ${{VAR}} is read from the environment when
# bridge starts; set these (a missing one is an error naming it):
{variables}
#
# Then: bridge check --online      (one real request per source and sink)
#       bridge notify-test {sink}   (a sample message, now)
#       bridge run
# The templates are in ./templates (edit them freely); a template missing there is taken
# from the ones bundled with bridge. The whole format: docs/contract.md and the README.

[bridge]
state = "sqlite:///bridge-state.db"   # relative to this file
listen = "${{BRIDGE_LISTEN:-127.0.0.1:8080}}"   # dashboard, /healthz, /metrics
templates = "templates"
timezone = "UTC"

'''


@dataclass(frozen=True, slots=True)
class Plan:
    """What `init` writes: the config text, the templates to copy, the variables."""

    config: str
    templates: tuple[str, ...]
    variables: tuple[Variable, ...]
    first_sink: str


def plan(sources: Sequence[str], sinks: Sequence[str]) -> Plan:
    source_snippets = [SOURCES[k] for k in dict.fromkeys(sources)]
    sink_snippets = [SINKS[k] for k in dict.fromkeys(sinks)]
    variables = tuple(v for s in [*source_snippets, *sink_snippets] for v in s.variables)
    width = max(len(v.name) for v in variables)
    listed = "\n".join(f"#   {v.name:<{width}}  {'(optional) ' if v.optional else ''}{v.what}"
                       for v in variables)
    notify = "[" + ", ".join(f'"{s.name}"' for s in sink_snippets) + "]"
    parts = [HEADER.format(variables=listed, sink=sink_snippets[0].name),
             "# --- sources: where job statuses come from " + "-" * 44 + "\n\n",
             *(s.toml + "\n" for s in source_snippets),
             "# --- sinks: where messages go " + "-" * 57 + "\n\n",
             *(s.toml + "\n" for s in sink_snippets),
             "# --- rules: which events notify which sinks, with which template " + "-" * 21
             + "\n\n",
             *(rule.format(notify=notify) + "\n" for _, rule in RULES if rule)]
    return Plan(config="".join(parts).rstrip("\n") + "\n",
                templates=tuple(name for name, _ in RULES), variables=variables,
                first_sink=sink_snippets[0].name)


def init(folder: Path, sources: Sequence[str], sinks: Sequence[str], *, force: bool,
         out: TextIO) -> int:
    """Write the plan into `folder`; raise InitRefused when files are in the way."""
    what = plan(sources, sinks)
    targets = [folder / CONFIG_NAME, *(folder / TEMPLATES_DIR / t for t in what.templates)]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p.relative_to(folder)) for p in existing)
        raise InitRefused(f"would overwrite {names} in {folder}; nothing written "
                          "(pass --force to overwrite, or run it in an empty folder)")
    (folder / TEMPLATES_DIR).mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(what.config, encoding="utf-8")
    for name in what.templates:
        shutil.copyfile(bundled_templates() / name, folder / TEMPLATES_DIR / name)
    out.write(f"wrote {CONFIG_NAME} and {TEMPLATES_DIR}/ ({', '.join(what.templates)})"
              f" in {folder.resolve()}\n\n"
              "set these variables (in the environment bridge runs in):\n")
    width = max(len(v.name) for v in what.variables)
    for variable in what.variables:
        flag = "(optional) " if variable.optional else ""
        out.write(f"  {variable.name:<{width}}  {flag}{variable.what}\n")
    out.write(f"\nthen:\n  bridge check --online\n  bridge notify-test {what.first_sink}\n"
              "  bridge run\n")
    return 0
