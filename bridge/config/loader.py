"""Read rules.toml: parse, interpolate `${VAR}`, validate, cross-check; report every problem.

`load_config` either returns a whole `Config` or raises `ConfigErrors` holding each problem
as `file:line: path: message`, so `bridge check` can show all of them at once.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args

from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError

from bridge.config.hints import AUTH_TAGS, known_keys, reword
from bridge.config.locate import LineIndex, format_path
from bridge.config.schema import (
    BasicAuth,
    BearerAuth,
    BridgeSettings,
    Config,
    HeaderAuth,
    OAuth2Auth,
    Rule,
    RuleTest,
    SinkBase,
    SourceBase,
)
from bridge.errors import ConfigError, ConfigErrors
from bridge.secrets import SecretRegistry, raw_secrets
from bridge.windows import Window

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP_LEVEL = ("bridge", "sources", "sinks", "rules", "windows", "tests")


def kind_models() -> tuple[dict[str, type[SourceBase]], dict[str, type[SinkBase]]]:
    """The config model of every registered source and sink kind, in registry order.

    Read from the registries each time (a kind registered later is known at once). Imported
    here, not at the top: the registries import the kinds' implementations, which import
    this package's schema."""
    from bridge.sinks import SINK_KINDS
    from bridge.sources import SOURCE_KINDS

    return ({k: e.model for k, e in SOURCE_KINDS.items()},
            {k: e.model for k, e in SINK_KINDS.items()})


def default_config_path() -> Path:
    return Path(os.environ.get("BRIDGE_CONFIG") or "rules.toml")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Collector:
    """Gathers problems with their line numbers as validation walks the file."""

    def __init__(self, file: str, index: LineIndex):
        self.file = file
        self.index = index
        self.errors: list[ConfigError] = []
        # Validation messages quote input (a secret pasted into `timeout` would be echoed
        # back): they are masked with the raw data's secrets, as no Config exists yet.
        self.secrets = SecretRegistry()

    def add(self, path: str, message: str) -> None:
        message = self.secrets.redact(message)
        self.errors.append(
            ConfigError(message, file=self.file, line=self.index.line_of(path), path=path)
        )


def secret_keys() -> frozenset[str]:
    """The keys whose values are secrets (`SecretStr` fields) in any table of the schema."""
    sources, sinks = kind_models()
    models: list[type[BaseModel]] = [*sources.values(), *sinks.values(),
                                     BasicAuth, BearerAuth, HeaderAuth, OAuth2Auth,
                                     BridgeSettings]
    return frozenset(
        field.alias or name for model in models for name, field in model.model_fields.items()
        if SecretStr in (field.annotation, *_flat_args(field.annotation))
    )


def _flat_args(annotation: Any) -> tuple[Any, ...]:
    # `SigningSecret | None` is Optional[Annotated[SecretStr, ...]]: look through both.
    found: list[Any] = []
    for arg in get_args(annotation):
        found.append(arg)
        found.extend(get_args(arg))
    return tuple(found)


def interpolate(data: Any, env: Mapping[str, str], on_missing: Callable[[str, str], None],
                path: str = "") -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string; report unset variables."""
    if isinstance(data, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            on_missing(path, name)
            return ""

        return _VAR.sub(substitute, data)
    if isinstance(data, dict):
        return {k: interpolate(v, env, on_missing, f"{path}.{k}" if path else k)
                for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, on_missing, f"{path}[{i}]") for i, v in enumerate(data)]
    return data


def _validate(model: type[BaseModel], data: Any, prefix: str, out: _Collector) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            _report(error, model, error["loc"], prefix, out)
        return None


def _report(error: Any, model: type[BaseModel], loc: tuple[Any, ...], prefix: str,
            out: _Collector) -> None:
    # pydantic puts the auth table's tag in the location (auth.bearer.token); the user wrote
    # auth.token, but the tag still says whose keys a typo is compared with.
    tagged = loc
    loc = tuple(p for p in loc if p not in AUTH_TAGS or p == "type")
    path = ".".join(filter(None, [prefix, format_path(loc)])).replace(".[", "[")
    out.add(path, _message(error, model, loc, tagged))


def _message(error: Any, model: type[BaseModel], loc: tuple[Any, ...],
             tagged: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        known = known_keys(model, tagged[:-1])
        return f"unknown key {key!r}{did_you_mean(key, known)}"
    if kind == "missing":
        return "missing required key"
    key = next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")
    reworded = reword(error, key)
    if reworded is not None:
        return reworded
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


@cache
def _union(models: tuple[type[BaseModel], ...]) -> TypeAdapter[Any]:
    """A discriminated union on `kind` over the registered models of one section."""
    if len(models) == 1:
        return TypeAdapter(models[0])
    union: Any = Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007
    return TypeAdapter(union)


def _validate_kinds(items: Any, section: str, registry: Mapping[str, type[BaseModel]],
                    out: _Collector) -> list[Any]:
    if items is None:
        return []
    if not isinstance(items, list):
        out.add(section, f"expected an array of tables: [[{section}]]")
        return []
    union = _union(tuple(registry.values()))
    known = ", ".join(registry)
    valid = []
    for i, item in enumerate(items):
        where = f"{section}[{i}]"
        try:
            valid.append(union.validate_python(item))
        except ValidationError as exc:
            for error in exc.errors():
                _report_kind_error(error, section, registry, where, out, known)
    return valid


def _report_kind_error(error: Any, section: str, registry: Mapping[str, type[BaseModel]],
                       where: str, out: _Collector, known: str) -> None:
    kind, loc = error["type"], tuple(error["loc"])
    if kind in {"union_tag_not_found", "model_attributes_type", "model_type"}:
        out.add(f"{where}.kind", f"missing required key; one of {known}")
    elif kind == "union_tag_invalid":
        tag = str(error["ctx"]["tag"])
        out.add(f"{where}.kind", f"unknown {section[:-1]} kind {tag!r}"
                f"{did_you_mean(tag, list(registry))} (known: {known})")
    elif len(registry) == 1:
        _report(error, next(iter(registry.values())), loc, where, out)
    else:
        # The union's errors start with the tag that chose the model.
        _report(error, registry[str(loc[0])], loc[1:], where, out)


def _validate_list(items: Any, section: str, model: type[BaseModel], out: _Collector) -> list[Any]:
    if items is None:
        return []
    if not isinstance(items, list):
        out.add(section, f"expected an array of tables: [[{section}]]")
        return []
    results = [_validate(model, item, f"{section}[{i}]", out) for i, item in enumerate(items)]
    return [r for r in results if r is not None]


def _check_unique(items: list[Any], section: str, raw: list[Any], out: _Collector) -> None:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            index = next(i for i, r in enumerate(raw) if r.get("name") == item.name)
            later = [i for i, r in enumerate(raw) if r.get("name") == item.name][-1]
            out.add(f"{section}[{later}].name",
                    f"duplicate name {item.name!r} (also {section}[{index}]); names must be unique")
        seen.add(item.name)


def _cross_check(data: dict[str, Any], sources: list[SourceBase], sinks: list[SinkBase],
                 rules: list[Rule], tests: list[RuleTest], out: _Collector) -> None:
    _check_unique(sources, "sources", data.get("sources") or [], out)
    _check_unique(sinks, "sinks", data.get("sinks") or [], out)
    _check_unique(rules, "rules", data.get("rules") or [], out)
    sink_names = [s.name for s in sinks]
    source_names = [s.name for s in sources]
    # Tables that failed validation were reported already: naming them elsewhere is no
    # second mistake ("unknown sink" for a sink whose `channel` was wrong only misleads).
    broken_sinks = _names(data.get("sinks")) - set(sink_names)
    broken_sources = _names(data.get("sources")) - set(source_names)
    raw_rules = data.get("rules") or []
    for rule in rules:
        i = next(i for i, r in enumerate(raw_rules) if r.get("name") == rule.name)
        for j, name in enumerate(rule.notify):
            if name not in sink_names and name not in broken_sinks:
                path = f"rules[{i}].notify" + (f"[{j}]" if isinstance(
                    raw_rules[i].get("notify"), list) else "")
                named = [*sink_names, *sorted(broken_sinks)]
                out.add(path, f"unknown sink {name!r}{did_you_mean(name, named)}"
                        f" (defined: {', '.join(named) or 'none'})")
        if (source_names or broken_sources) and not any(
                fnmatchcase(s, rule.source) for s in [*source_names, *broken_sources]):
            out.add(f"rules[{i}].source", f"{rule.source!r} matches no source"
                    f"{did_you_mean(rule.source, source_names)}")
    _check_jtl_actions(data, sources, sinks, broken_sources, out)
    for i, test in enumerate(tests):
        for j, expect in enumerate(test.expect):
            if expect.sink not in sink_names and expect.sink not in broken_sinks:
                out.add(f"tests[{i}].expect[{j}].sink",
                        f"unknown sink {expect.sink!r}{did_you_mean(expect.sink, sink_names)}")


def _check_jtl_actions(data: dict[str, Any], sources: list[SourceBase], sinks: list[SinkBase],
                       broken_sources: set[str], out: _Collector) -> None:
    """JTL buttons show only on a jtl source's messages: without one they never would."""
    if broken_sources or any(s.kind == "jtl" for s in sources):
        return
    raw_sinks = data.get("sinks") or []
    for sink in sinks:
        wanted = [a for a in getattr(sink, "actions", []) if a.startswith("jtl_")]
        if wanted:
            i = next(i for i, r in enumerate(raw_sinks) if r.get("name") == sink.name)
            out.add(f"sinks[{i}].actions", f"{', '.join(wanted)} act on JTL syncs, but no "
                    "source has kind = \"jtl\": the buttons would never show")


def _check_windows(data: dict[str, Any], rules: list[Rule], windows: list[Window],
                   out: _Collector) -> None:
    """Window names are unique, and every `mute_during` / `active_during` names one."""
    raw_windows = data.get("windows") or []
    _check_unique(windows, "windows", raw_windows, out)
    # Names as written, so a window with another mistake is still a name rules may use.
    names = [w["name"] for w in raw_windows
             if isinstance(w, dict) and isinstance(w.get("name"), str)]
    raw_rules = data.get("rules") or []
    for rule in rules:
        i = next(i for i, r in enumerate(raw_rules) if r.get("name") == rule.name)
        for key in ("mute_during", "active_during"):
            listed = getattr(rule, key)
            for j, name in enumerate(listed):
                if name not in names:
                    path = f"rules[{i}].{key}" + (
                        f"[{j}]" if isinstance(raw_rules[i].get(key), list) else "")
                    out.add(path, f"unknown window {name!r}{did_you_mean(name, names)}"
                            f" (defined: {', '.join(names) or 'none; add a [[windows]] table'})")
        if rule.mute_during and rule.active_during:
            out.add(f"rules[{i}].active_during",
                    "give `mute_during` or `active_during`, not both")
    # As written, so a rule with another mistake still counts as naming its windows.
    muted = {name for r in raw_rules if isinstance(r, dict)
             for name in _listed(r.get("mute_during"))}
    for i, window in enumerate(raw_windows):
        if (isinstance(window, dict) and window.get("summary") is True
                and window.get("name") not in muted):
            out.add(f"windows[{i}].summary", "has no effect: no rule names this window in "
                    "mute_during (the summary collects the failures mute_during mutes)")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _names(tables: Any) -> set[str]:
    if not isinstance(tables, list):
        return set()
    return {str(t["name"]) for t in tables if isinstance(t, dict) and "name" in t}


def _resolve_paths(settings: BridgeSettings, base: Path) -> BridgeSettings:
    templates = Path(settings.templates)
    if not templates.is_absolute():
        templates = base / templates
    state = settings.state
    prefix = "sqlite:///"
    if state.startswith(prefix) and not state.startswith(prefix + "/"):
        relative = state[len(prefix):]
        if relative and relative != ":memory:":
            state = prefix + str(base / relative)
    return settings.model_copy(update={"templates": str(templates), "state": state})


def parse_config(text: str, file: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate config text; `file` names it in messages and anchors relative paths."""
    env = os.environ if env is None else env
    out = _Collector(file, LineIndex(text))
    raw = _parse_toml(text, file)
    for key in raw:
        if key not in _TOP_LEVEL:
            out.add(key, f"unknown key {key!r}{did_you_mean(key, _TOP_LEVEL)}"
                    f" (top-level tables: {', '.join(_TOP_LEVEL)})")
    data = _interpolate(raw, env, out)
    settings = _validate(BridgeSettings, data.get("bridge", {}), "bridge", out)
    source_models, sink_models = kind_models()
    sources = _validate_kinds(data.get("sources"), "sources", source_models, out)
    sinks = _validate_kinds(data.get("sinks"), "sinks", sink_models, out)
    rules = _validate_list(data.get("rules"), "rules", Rule, out)
    windows = _validate_list(data.get("windows"), "windows", Window, out)
    tests = _validate_list(data.get("tests"), "tests", RuleTest, out)
    _cross_check(data, sources, sinks, rules, tests, out)
    _check_windows(data, rules, windows, out)
    if out.errors:
        out.errors.sort(key=lambda e: e.line or 0)
        raise ConfigErrors(out.errors)
    assert settings is not None
    base = Path(file).resolve().parent
    return Config(bridge=_resolve_paths(settings, base), sources=sources, sinks=sinks,
                  rules=rules, windows=windows, tests=tests, path=file)


def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigErrors([ConfigError(f"not valid TOML: {exc}", file=file,
                                        line=int(match.group(1)) if match else None)]) from None


def _interpolate(raw: Any, env: Mapping[str, str], out: _Collector, path: str = "") -> Any:
    """`interpolate` reporting unset variables to `out`, whose messages are then masked with
    the secrets the data holds."""
    data = interpolate(raw, env, lambda at, name: out.add(
        at, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"),
        path)
    out.secrets.add(raw_secrets(data, secret_keys()))
    return data


def _read(path: str | Path | None) -> tuple[Path, str]:
    file = Path(path) if path is not None else default_config_path()
    try:
        return file, file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigErrors([ConfigError(
            "no such config file; pass --config PATH or set BRIDGE_CONFIG", file=str(file))]
        ) from None
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read: {exc.strerror}", file=str(file))]) from None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; raise ConfigErrors listing every problem."""
    file, text = _read(path)
    return parse_config(text, str(file), env)


def load_settings(path: str | Path | None = None,
                  env: Mapping[str, str] | None = None) -> BridgeSettings:
    """Only the config's `[bridge]` table, checked as `load_config` checks it.

    For the commands that talk to a running bridge (`silence`, `watch`, `jtl`): they need its
    `listen` and `admin_token`, nothing else. The bridge they call holds the sources' and
    sinks' credentials, so those tables are neither interpolated nor validated here: a
    machine with the config but without, say, `$SLACK_BOT_TOKEN` can still add a silence.
    `load_config` (`bridge run`, `bridge check`) still wants every variable set."""
    file, text = _read(path)
    out = _Collector(str(file), LineIndex(text))
    data = _interpolate(_parse_toml(text, str(file)).get("bridge", {}), os.environ
                        if env is None else env, out, "bridge")
    settings = _validate(BridgeSettings, data, "bridge", out)
    if out.errors:
        out.errors.sort(key=lambda e: e.line or 0)
        raise ConfigErrors(out.errors)
    assert settings is not None
    return _resolve_paths(settings, file.resolve().parent)


def locate(config: Config, path: str, message: str) -> ConfigError:
    """A ConfigError at `path` of an already loaded config (for later checks like templates)."""
    try:
        index = LineIndex(Path(config.path).read_text(encoding="utf-8"))
        line = index.line_of(path)
    except OSError:
        line = None
    return ConfigError(message, file=config.path, line=line, path=path)
