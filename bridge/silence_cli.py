"""`bridge silence add|list|expire`: silences on a running bridge, through its HTTP API.

    bridge silence add source=jtl* rule=job-failed --duration 2h --comment "ERP upgrade"
    bridge silence add source=jtl job.id=3c90c3cc --until-resolved
    bridge silence list [--all] [--json]
    bridge silence expire sil_0123456789abcdef

Requests carry `Authorization: Bearer` with `$BRIDGE_ADMIN_TOKEN`, else the config's
`[bridge] admin_token`, as `bridge watch` and `bridge jtl` do. Matchers are checked here
first (same rules as the API), so a typo is named before anything is sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.silences import MATCHER_FIELDS, SilenceError, parse_matcher_args


class ApiError(Exception):
    """The bridge refused, or did not answer; the message says which and what to do."""


def add_parser(sub: Any, config_arg: Any) -> None:
    silence = sub.add_parser("silence", help="add, list or expire silences on a running bridge")
    actions = silence.add_subparsers(dest="silence_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="mute notifications matching every MATCHER")
    add.add_argument("matchers", nargs="+", metavar="MATCHER",
                     help=f"FIELD=GLOB; fields: {', '.join(MATCHER_FIELDS)}")
    span = add.add_mutually_exclusive_group()
    span.add_argument("--duration", default=None, help='how long, e.g. "2h" (default 1h)')
    span.add_argument("--until-resolved", action="store_true",
                      help="until the job (job.id=...) reaches succeeded")
    add.add_argument("--comment", default="")
    add.add_argument("--author", default=os.environ.get("USER", ""))
    listing = actions.add_parser("list", help="silences in force (and pending)")
    listing.add_argument("--all", action="store_true", help="ended ones too")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    for parser in (add, listing, expire):
        config_arg(parser)
        parser.add_argument("--url", help="the bridge's HTTP address (default: [bridge] listen)")


@dataclass(frozen=True, slots=True)
class Target:
    """The running bridge a command talks to, and the admin token its writes carry."""

    url: str
    token: str | None


def target(args: argparse.Namespace) -> Target:
    """`--url`, else the config's `[bridge] listen`; the token `$BRIDGE_ADMIN_TOKEN`, else the
    config's `[bridge] admin_token`, so a command run with the config `bridge run` uses is let
    in as `bridge run` lets it in. With `--url` alone no config is read (the command works from
    a machine without the config or its secrets); `--url` with `--config` reads the token.
    Only the `[bridge]` table is read: the sources' and sinks' secrets stay with the bridge
    called, so they need not be set where the command runs."""
    url = str(args.url).rstrip("/") if args.url else None
    token = os.environ.get("BRIDGE_ADMIN_TOKEN") or None
    if url is not None and (token is not None or args.config is None):
        return Target(url, token)
    from bridge.config import load_settings

    settings = load_settings(Path(args.config) if args.config else None)
    if token is None and settings.admin_token is not None:
        token = settings.admin_token.get_secret_value() or None
    return Target(url or f"http://{settings.listen}", token)


def call(bridge: Target, method: str, path: str, body: object = None) -> Any:
    """One API request; the answer's JSON, or ApiError with the bridge's own message."""
    return exchange(bridge, method, path, body)[1]


def exchange(bridge: Target, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One API request (`bridge silence`, `bridge jtl`, `bridge watch`): the HTTP status and
    the answer's JSON, or ApiError with the bridge's own message."""
    url = bridge.url
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    if bridge.token:
        request.add_header("Authorization", f"Bearer {bridge.token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise ApiError(f"bridge at {url} refused: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"no bridge answering at {url} ({exc}); start one with `bridge run` "
                       "or pass --url") from None


def cmd_silence(args: argparse.Namespace) -> int:
    try:
        if args.silence_action == "add":
            body: dict[str, Any] = {"matchers": parse_matcher_args(args.matchers),
                                    "comment": args.comment, "author": args.author}
            if args.until_resolved:
                body["until_resolved"] = True
            else:
                body["duration"] = args.duration or "1h"
            silence = call(target(args), "POST", "/v1/silences", body)
            print(f"added {silence['id']}: {describe(silence)}")
        elif args.silence_action == "list":
            query = "?expired=1" if args.all else ""
            silences = call(target(args), "GET", "/v1/silences" + query)["silences"]
            if args.json:
                print(json.dumps(silences, indent=2))
            elif not silences:
                print("no silences")
            for silence in [] if args.json else silences:
                print(f"{silence['id']}  {silence['status']:<8} {describe(silence)}")
        else:
            call(target(args), "DELETE", f"/v1/silences/{args.id}")
            print(f"expired {args.id}")
    except (SilenceError, ApiError) as exc:
        print(f"bridge silence {args.silence_action}: {exc}", file=sys.stderr)
        return 1
    return 0


def describe(silence: dict[str, Any]) -> str:
    matchers = " ".join(f"{k}={v}" for k, v in sorted(silence["matchers"].items()))
    until = "until resolved" if silence.get("until_resolved") else ""
    if silence.get("ends"):
        until = f"until {silence['ends']}" + (" or resolved" if until else "")
    extra = "".join(f" · {silence[key]}" for key in ("comment", "author") if silence.get(key))
    return f"{matchers}  {until}{extra}"
