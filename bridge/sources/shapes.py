"""Shape checks for decoded API bodies: each names the drifted field, so a changed API reads
as "unexpected response shape: results[3].status is missing", not as a KeyError."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from bridge.errors import SourceUnavailable


def parse_json(raw: bytes | str) -> Any:
    """`json.loads` that fails only with ValueError: a hostile body nested a hundred thousand
    levels deep makes the decoder raise RecursionError instead."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to decode") from None


def drift(where: str, problem: str) -> SourceUnavailable:
    return SourceUnavailable(
        f"unexpected response shape: {where} {problem}; the API may have changed or "
        "base_url may point at a different API"
    )


def expect_list(body: Any, where: str) -> list[Any]:
    if not isinstance(body, list):
        raise drift(where, f"should be a list, got {type_name(body)}")
    return body


def expect_object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise drift(where, f"should be an object, got {type_name(body)}")
    return body


def require_str_or_int(item: Mapping[str, Any], key: str, where: str) -> str:
    """An identifier field: text or an integer, returned as text (never via float)."""
    value = item.get(key)
    if value is None or value == "":
        raise drift(f"{where}.{key}", "is missing" if value is None else "is empty")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise drift(f"{where}.{key}", f"should be a string, got {type_name(value)}")
    return str(value)


def optional_number(item: Mapping[str, Any], key: str, where: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise drift(f"{where}.{key}", f"should be a number, got {type_name(value)}")
    return float(value)


def percent_value(value: float | None) -> float | None:
    """A reported percent made safe for detection: None for no progress (absent, negative,
    NaN or infinite, which lenient JSON encoders send) and at most 100."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return min(100.0, value)


def optional_str(item: Mapping[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise drift(f"{where}.{key}", f"should be a string, got {type_name(value)}")
    return value


def items_of(payload: Any, where: str) -> list[dict[str, Any]]:
    """A pushed body as items: one object or a list of objects."""
    items = payload if isinstance(payload, list) else [payload]
    return [expect_object(item, f"{where}[{i}]") for i, item in enumerate(items)]


def type_name(value: Any) -> str:
    names: dict[type[Any], str] = {
        dict: "an object", list: "a list", str: "a string", bool: "a boolean",
        int: "a number", float: "a number", type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
