"""The `bridge` command line (contract section 1). Each subcommand is a small function."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bridge import __version__, loop
from bridge.config import Config, load_config
from bridge.errors import BridgeError, ConfigErrors
from bridge.secrets import REGISTRY

if TYPE_CHECKING:
    pass

log = logging.getLogger("bridge")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, default=None,
        help="rules.toml to use (default: $BRIDGE_CONFIG, then ./rules.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Watch job-status APIs and notify Slack and webhooks."
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("BRIDGE_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default=os.environ.get("BRIDGE_LOG_FORMAT", "text"),
                        choices=["text", "json"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run pollers, rules, delivery and the HTTP server")
    _config_arg(run)
    run.add_argument("--drain-timeout", type=float, default=10.0,
                     help="seconds to keep delivering after SIGTERM (default 10)")
    run.add_argument("--loop", choices=loop.CHOICES, default=None,
                     help="event loop: uvloop (default, when installed; $BRIDGE_LOOP) or "
                          "asyncio's own")

    demo = sub.add_parser("demo", help="run against built-in simulators of the four seed APIs")
    demo.add_argument("--listen", default="127.0.0.1:8080",
                      help="dashboard address (default 127.0.0.1:8080; port 0 = any free port)")
    demo.add_argument("--tick", type=float, default=2.0,
                      help="seconds between simulated job changes (default 2)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--duration", type=float, default=None,
                      help="stop by itself after this many seconds")
    demo.add_argument("--verbose", "-v", action="store_true",
                      help="print each rendered message under its event, too")
    demo.add_argument("--quiet", action="store_true",
                      help="one line per event, no message lines")

    check = sub.add_parser("check", help="validate the config and every template")
    _config_arg(check)
    check.add_argument("--online", action="store_true",
                       help="then one real request per source and Slack sink")
    check.add_argument("--send", action="store_true",
                       help="with --online: POST a signed test event to each webhook sink")

    test = sub.add_parser("test", help="run the [[tests]] declared in the config")
    _config_arg(test)

    render = sub.add_parser("render", help="print what a rule would send for an event")
    _config_arg(render)
    render.add_argument("--rule", help="the rule to render (without it, --sample KIND prints "
                        "the sample event)")
    what = render.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", help="event as JSON: a file, or - for stdin")
    what.add_argument("--sample", nargs="?", const="", metavar="KIND",
                      help="the sample event `bridge check` uses (default: the rule's kind)")

    watch = sub.add_parser("watch", help="ask a running bridge to track one job id")
    _config_arg(watch)
    watch.add_argument("source")
    watch.add_argument("job_id")
    watch.add_argument("--url", help="the bridge's HTTP address (default: [bridge] listen)")

    outbox = sub.add_parser("outbox", help="show, retry or drop pending and dead deliveries")
    _config_arg(outbox)
    outbox.add_argument("action", nargs="?", default="list", choices=["list", "retry", "drop"])
    outbox.add_argument("id", nargs="?", help="delivery id (see `bridge outbox list`)")
    outbox.add_argument("--all", action="store_true", help="act on every dead delivery")
    outbox.add_argument("--status", default=None, choices=[
        "pending", "dead", "delivered", "silenced", "superseded"])
    outbox.add_argument("--json", action="store_true", help="machine-readable output")

    schema = sub.add_parser("schema", help="the webhook event catalog, or one type's JSON Schema")
    schema.add_argument("type", nargs="?", help="an event type, e.g. job.transition")
    schema.add_argument("--markdown", action="store_true",
                        help="print docs/webhooks.md (the catalog with examples) instead")

    notify = sub.add_parser("notify-test", help="send sample notifications to one sink now")
    _config_arg(notify)
    notify.add_argument("sink", help="a sink of the config")
    kinds = notify.add_mutually_exclusive_group()
    kinds.add_argument("--all-types", action="store_true",
                       help="one sample of every event type (default: one job.transition)")
    kinds.add_argument("--rule", help="render this rule's template with a sample event of its "
                       "kind instead")
    from bridge.jtl_cli import add_parser as add_jtl_parser
    from bridge.silence_cli import add_parser as add_silence_parser

    add_silence_parser(sub, _config_arg)
    add_jtl_parser(sub, _config_arg)
    from bridge.record_cli import add_parsers as add_record_parsers

    add_record_parsers(sub, _config_arg)
    _init_parser(sub)
    return parser


def _init_parser(sub: Any) -> None:
    from bridge.init import SINKS, SOURCES

    init = sub.add_parser("init", help="write a commented rules.toml and its templates here")
    init.add_argument("--source", action="append", choices=list(SOURCES), metavar="KIND",
                      help=f"a source kind to set up, repeatable: {', '.join(SOURCES)} "
                      "(default zendesk)")
    init.add_argument("--sink", action="append", choices=list(SINKS), metavar="KIND",
                      help=f"a sink kind, repeatable: {', '.join(SINKS)} (default slack)")
    init.add_argument("--dir", type=Path, default=Path("."),
                      help="folder to write into (default: the current one)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")


def cmd_init(args: argparse.Namespace) -> int:
    from bridge.init import init

    return init(args.dir, args.source or ["zendesk"], args.sink or ["slack"], force=args.force,
                out=sys.stdout)


def _setup_logging(level: str, fmt: str, config: Config | None = None) -> None:
    try:
        from bridge.logs import setup_logging
    except ImportError:  # pragma: no cover - logs module ships with the server
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(message)s")
        return
    setup_logging(level, fmt, config)


def _load(path: Path | None) -> Config:
    config = load_config(path)
    # From here on logs, errors, responses and reports mask the config's secrets.
    REGISTRY.add_config(config)
    return config


def _print_config_errors(errors: ConfigErrors) -> int:
    for error in errors.errors:
        print(REGISTRY.redact(error.render()), file=sys.stderr)
    print(f"{len(errors.errors)} problem(s) found", file=sys.stderr)
    return 1


def _report(write: Callable[[TextIO], int]) -> int:
    """Run a command that reports on `out`, and print what it wrote with every known
    secret masked (a template may quote one, a rendered message carry one)."""
    out = io.StringIO()
    try:
        return write(out)
    finally:
        sys.stdout.write(REGISTRY.redact(out.getvalue()))
        sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    loop_name = loop.choose(args.loop)
    config = _load(args.config)
    _setup_logging(args.log_level, args.log_format, config)
    return loop.run(_run(config, args.drain_timeout), loop_name)


async def _run(config: Config, drain_timeout: float) -> int:
    from bridge.app import Bridge

    async with Bridge(config, drain_timeout=drain_timeout) as bridge:
        install_stop_signals(bridge.stop)
        log.info("bridge running: %d sources, %d sinks, %d rules; dashboard %s",
                 len(config.sources), len(config.sinks), len(config.rules), bridge.http_url)
        await bridge.wait()
        log.info("stopping: draining deliveries for up to %.0fs (a second signal exits now)",
                 drain_timeout)
    return 0


def install_stop_signals(stop: Any) -> None:
    """First SIGINT/SIGTERM: graceful stop. Second: exit at once (pending rows stay queued)."""
    loop = asyncio.get_running_loop()
    count = {"n": 0}

    def on_signal() -> None:
        count["n"] += 1
        if count["n"] == 1:
            stop()
        else:
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    _setup_logging("warning" if args.log_level == "info" else args.log_level, args.log_format)
    return asyncio.run(run_demo(listen=args.listen, tick=args.tick, seed=args.seed,
                                duration=args.duration,
                                verbose=args.verbose and not args.quiet, quiet=args.quiet))


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from bridge.checks import check

    def offline_then_online(out: TextIO) -> int:
        code = check(config, out)
        if code != 0 or not (args.online or args.send):
            return code
        from bridge.checks.online import check_online

        return asyncio.run(check_online(config, out, send=args.send))

    return _report(offline_then_online)


def cmd_test(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from bridge.checks import run_tests

    return _report(lambda out: run_tests(config, out))


def cmd_render(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from bridge.checks import render_event
    from bridge.checks.render_event import read_event

    event = read_event(config, event=args.event, sample=args.sample, rule=args.rule,
                       stdin=sys.stdin)
    if args.rule is None:  # read_event allows it only for --sample: show the sample
        print(json.dumps(event, indent=2, ensure_ascii=False))
        return 0
    return _report(lambda out: render_event(config, args.rule, event, out))


def cmd_watch(args: argparse.Namespace) -> int:
    from bridge.silence_cli import ApiError, exchange, target

    try:
        status, answer = exchange(target(args), "POST", "/v1/watches",
                                  {"source": args.source, "id": args.job_id})
    except ApiError as exc:
        print(exc, file=sys.stderr)
        return 1
    verb = "now tracking" if status == 201 else "already tracking"
    print(f"{verb} {args.source}/{args.job_id}" + (f": {answer.get('message')}"
                                                   if answer.get("message") else ""))
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from bridge.outbox_cli import run_outbox

    return asyncio.run(run_outbox(config, args))


def cmd_schema(args: argparse.Namespace) -> int:
    from bridge.webhooks import catalog

    if args.markdown:
        from bridge.webhooks.docs import markdown

        sys.stdout.write(markdown())
        return 0
    if args.type:
        print(json.dumps(catalog.json_schema(args.type), indent=2, ensure_ascii=False))
        return 0
    width = max(len(entry.name) for entry in catalog.ENTRIES)
    for entry in catalog.ENTRIES:
        print(f"{entry.name:<{width}}  {entry.summary}")
    return 0


def cmd_notify_test(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from bridge.notify_test import notify_test

    return asyncio.run(notify_test(config, args.sink, all_types=args.all_types, out=sys.stdout,
                                   rule=args.rule))


def cmd_silence(args: argparse.Namespace) -> int:
    from bridge.silence_cli import cmd_silence as run

    return run(args)


def cmd_jtl(args: argparse.Namespace) -> int:
    from bridge.jtl_cli import cmd_jtl as run

    return run(args)


def cmd_record(args: argparse.Namespace) -> int:
    from bridge.record_cli import cmd_record as run

    return run(args, _load(args.config))


def cmd_replay(args: argparse.Namespace) -> int:
    from bridge.record_cli import cmd_replay as run

    return run(args, _load)


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "check": cmd_check,
    "test": cmd_test,
    "render": cmd_render,
    "watch": cmd_watch,
    "outbox": cmd_outbox,
    "schema": cmd_schema,
    "notify-test": cmd_notify_test,
    "silence": cmd_silence,
    "jtl": cmd_jtl,
    "record": cmd_record,
    "replay": cmd_replay,
    "init": cmd_init,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigErrors as errors:
        return _print_config_errors(errors)
    except BridgeError as exc:
        print(REGISTRY.redact(f"bridge {args.command}: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `bridge outbox | head`: the reader has gone, which is not an error of ours. Point
        # stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
