"""Map TOML paths (`sources[1].interval`) to line numbers, so every config error says where.

tomllib gives values without positions; this scans the text for table headers and keys.
It understands what rules.toml uses: `[table]`, `[[array]]`, `[array.sub]`, `key = value`
and one level of inline tables. Where a key cannot be placed it falls back to its table.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*("[^"]+"|[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\s*=')
_INLINE_KEY = re.compile(r'(?:[{,]\s*)("[^"]+"|[A-Za-z0-9_\-]+)\s*=')


def _part(key: str) -> str:
    return key.strip().strip('"')


class LineIndex:
    """Remembers the first line on which each dotted TOML path appears."""

    def __init__(self, text: str):
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        table = ""
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0] if '"' not in raw else raw
            header = _HEADER.match(raw)
            if header and not _KEY.match(raw):
                names = [_part(p) for p in header.group(2).split(".")]
                if header.group(1) == "[[":
                    base = self._resolve(names[:-1], counters)
                    array = f"{base}.{names[-1]}" if base else names[-1]
                    counters[array] = counters.get(array, -1) + 1
                    table = f"{array}[{counters[array]}]"
                else:
                    table = self._resolve(names, counters)
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path = ".".join(filter(None, [table, *(_part(k) for k in key.group(1).split("."))]))
            self.lines.setdefault(path, number)
            rest = line[key.end() :]
            if "{" in rest:
                for inner in _INLINE_KEY.finditer(rest):
                    self.lines.setdefault(f"{path}.{_part(inner.group(1))}", number)

    @staticmethod
    def _resolve(names: list[str], counters: dict[str, int]) -> str:
        path = ""
        for name in names:
            path = f"{path}.{name}" if path else name
            if path in counters:
                path = f"{path}[{counters[path]}]"
        return path

    def line_of(self, path: str) -> int | None:
        """The line of `path`, or of its nearest enclosing key or table."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        return self.lines.get(path)


def format_path(loc: tuple[int | str, ...]) -> str:
    """("sources", 1, "interval") -> "sources[1].interval"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out
