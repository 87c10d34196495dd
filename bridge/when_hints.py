"""`when` errors in the words of someone writing a rule, not in Jinja's.

Jinja says "chunk after expression" for `job.progress = 100` and
"'bridge.model.JobStatus object' has no attribute 'progres'" for a typo. These functions
turn such messages into what to write instead: "use ==", and a did-you-mean over the names
and fields the event really has (the context `when` sees).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any

from bridge.model import JobState

# A single `=` that is not part of ==, !=, <=, >=.
_ASSIGN = re.compile(r"(?<![=!<>])=(?!=)")
_NO_ATTRIBUTE = re.compile(r"'(?P<owner>[^']+)' has no attribute '(?P<name>[^']+)'")
_UNDEFINED_NAME = re.compile(r"'(?P<name>[^']+)' is undefined")


def syntax_message(expression: str, jinja_message: str) -> str:
    """Why `expression` does not compile, with the fix when it is a common slip."""
    if _ASSIGN.search(expression):
        fixed = _ASSIGN.sub("==", expression)
        return (f"`when` {expression!r} does not compile: = is not a comparison, use == "
                f"(write {fixed!r})")
    return f"`when` {expression!r} does not compile: {jinja_message}"


def undefined_message(expression: str, jinja_message: str, context: Mapping[str, Any]) -> str:
    """An unknown name or field in `expression`, with what the event does have."""
    prefix = f"`when` {expression!r}:"
    missing = _NO_ATTRIBUTE.search(jinja_message)
    if missing:
        name = missing.group("name")
        owner, fields = _written_owner(expression, name, context) or _owner(
            missing.group("owner"), context)
        return (f"{prefix} {owner} has no field {name!r}{_did_you_mean(name, fields)} "
                f"({owner} fields: {', '.join(fields)})")
    unknown = _UNDEFINED_NAME.search(jinja_message)
    if unknown:
        name = unknown.group("name")
        if name in {state.value for state in JobState}:
            return (f"{prefix} unknown name {name!r}: a state is text, quote it "
                    f"({_quoted(expression, name)!r})")
        names = sorted(context)
        return (f"{prefix} unknown name {name!r}{_did_you_mean(name, names)} "
                f"(names: {', '.join(names)})")
    return f"{prefix} {jinja_message}"


def _written_owner(expression: str, name: str,
                   context: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """The `a.b` the expression wrote before `.name`, when it leads to a value."""
    found = re.search(rf"([A-Za-z_][\w.]*)\.{re.escape(name)}\b", expression)
    if not found:
        return None
    path = found.group(1)
    value: Any = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value is None:
            return None
    return path, _fields(value)


def _owner(description: str, context: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The context name whose value Jinja described ("bridge.model.JobStatus object", or
    "dict object"), and the fields it has."""
    type_name = description.removesuffix(" object").rsplit(".", 1)[-1]
    for key, value in context.items():
        if type(value).__name__ == type_name:
            return key, _fields(value)
        # One level down: `event.job`, `previous`'s fields.
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                inner = getattr(value, field.name)
                if type(inner).__name__ == type_name:
                    return f"{key}.{field.name}", _fields(inner)
    return type_name, []


def _fields(value: Any) -> list[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [f.name for f in dataclasses.fields(value)]
    if isinstance(value, Mapping):
        return sorted(str(k) for k in value)
    return sorted(n for n in dir(value) if not n.startswith("_"))


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _quoted(expression: str, word: str) -> str:
    return re.sub(rf"(?<!['\"\w]){re.escape(word)}(?!['\"\w])", f"'{word}'", expression)
