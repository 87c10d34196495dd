"""The README's Layout list matches the tree: every top-level part of the package is named,
and every path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Not parts anyone looks for: package markers and caches.
_SKIPPED = {"__init__.py", "__main__.py", "py.typed", "__pycache__"}
_PATH = re.compile(r"(?<![\w/.])((?:bridge|bench|docs|examples|scripts|tests)/[\w./-]*|Dockerfile)")


def layout_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def named_paths() -> set[str]:
    return {match.rstrip(".,;:") for match in _PATH.findall(layout_block())}


def test_every_top_level_part_of_the_package_is_named_in_the_layout() -> None:
    named = named_paths()
    missing = [
        f"bridge/{entry.name}" + ("/" if entry.is_dir() else "")
        for entry in sorted((REPO / "bridge").iterdir())
        if entry.name not in _SKIPPED
        and f"bridge/{entry.name}" + ("/" if entry.is_dir() else "") not in named
    ]
    assert not missing, f"README Layout does not name: {', '.join(missing)}"


def test_every_path_the_layout_names_exists() -> None:
    gone = sorted(path for path in named_paths() if not (REPO / path).exists())
    assert not gone, f"README Layout names paths that do not exist: {', '.join(gone)}"
