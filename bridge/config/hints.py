"""pydantic's validation messages reworded for people editing rules.toml.

"Input should be a valid string" says neither what the key wants nor what was written; here
it becomes `expected a string like channel = "#ops-alerts", got a list: one value, not a
list (drop the brackets)`. Each message names the expected TOML type, an example of the key
(or of the type) and the type found. The value itself is never quoted: a secret pasted
into the wrong key is not known as a secret yet. Errors whose message bridge wrote itself
(`ValueError`s in the models) are left as they are: they already say what to do.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args

from pydantic import BaseModel

# An example for the keys people most often get wrong; others get their type's example.
EXAMPLES: dict[str, str] = {
    "name": '"ops-slack"',
    "channel": '"#ops-alerts"',
    "notify": '["ops-slack"]',
    "to": '["failed", "cancelled"]',
    "from": '["running"]',
    "template": '"transition.slack.j2"',
    "when": '"job.progress == 100"',
    "token": '"${SLACK_BOT_TOKEN}"',
    "username": '"you@example.com/token"',
    "password": '"${ZENDESK_API_TOKEN}"',
    "ids": '["8b726e606741012ffc2d782bcb7848fe"]',
    "headers": '{ "X-Team" = "ops" }',
    "states": '{ "done" = "succeeded" }',
    "down_after": "3",
    "attempts": "10",
    "progress_step": "25",
    "tenant_id": '"${JTL_TENANT_ID}"',
    "client_id": '"${JTL_CLIENT_ID}"',
    "client_secret": '"${JTL_CLIENT_SECRET}"',
}
_TYPES: dict[str, tuple[str, str]] = {
    "string_type": ("a string", '"text"'),
    "int_type": ("an integer", "3"),
    "int_parsing": ("an integer", "3"),
    "int_from_float": ("an integer", "3"),
    "float_type": ("a number", "2.5"),
    "float_parsing": ("a number", "2.5"),
    "bool_type": ("true or false", "true"),
    "bool_parsing": ("true or false", "true"),
    "list_type": ("a list", '["a", "b"]'),
    "dict_type": ("a table", '{ key = "value" }'),
    "model_type": ("a table", '{ key = "value" }'),
    "model_attributes_type": ("a table", '{ key = "value" }'),
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def toml_type(value: Any) -> str:
    """What the user wrote, in TOML's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def reword(error: Any, key: str) -> str | None:
    """A message for one pydantic error at `key`, or None to keep pydantic's own."""
    kind = str(error["type"])
    value = error.get("input")
    if kind in _TYPES:
        expected, example = _TYPES[kind]
        example = EXAMPLES.get(key, example)
        message = f"expected {expected} like {key} = {example}, got {toml_type(value)}"
        if kind == "string_type" and isinstance(value, list) and len(value) == 1:
            message += ": one value, not a list (drop the brackets)"
        return message
    if kind in {"literal_error", "enum"}:
        expected = str((error.get("ctx") or {}).get("expected", ""))
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"expected one of {expected}{hint}"
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        bound = (error.get("ctx") or {}).get(name)
        return f"must be {words} {bound}"
    if kind in {"too_short", "too_long"}:
        return str(error["msg"]).replace("Value should", "should")
    return None


# The `type` tags of the auth tables: pydantic names the one it tried in an error's location.
AUTH_TAGS = frozenset({"basic", "bearer", "header", "oauth2", "none"})


def known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the table at `loc` (as pydantic reports it, auth tags included) takes."""
    current: Any = model
    for i, part in enumerate(loc):
        if isinstance(part, int) or not (isinstance(current, type)
                                         and issubclass(current, BaseModel)):
            continue
        if part in AUTH_TAGS and part == _tag_of(current):
            continue  # the union member was picked by this tag already
        field = current.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        members = _models_in(annotation)
        following = loc[i + 1] if i + 1 < len(loc) else None
        current = next((m for m in members if _tag_of(m) == following),
                       members[0] if members else annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items() if name != "path"]
    return []


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's annotation holds: `Auth | None` is Optional[Annotated[Union]]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _tag_of(model: type[BaseModel]) -> object:
    """The `type` an auth model is chosen by ("bearer"), or None for other models."""
    field = model.model_fields.get("type")
    tags = get_args(field.annotation) if field is not None else ()
    return tags[0] if len(tags) == 1 else None
