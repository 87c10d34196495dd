"""What ships inside the package: the default message templates and the demo config.

Both are package data read through `importlib.resources`, so a wheel installed anywhere
(pip, pipx, a container) has them, not only a git checkout.

Template lookup: a config's `[bridge] templates` folder first, then the bundled templates.
A user overrides one default by writing a file of the same name; a folder that lacks a
template, or does not exist at all, still renders with the bundled one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, PackageLoader

_PACKAGE = "bridge"
_TEMPLATES = "templates"
_DEMO_CONFIG = "demo.toml"


def bundled_templates() -> Path:
    """The folder of the bundled templates (a wheel install always unpacks it on disk)."""
    return Path(str(files(_PACKAGE).joinpath(_TEMPLATES)))


@cache
def _bundled_loader() -> PackageLoader:
    # Jinja's own loader for package data: it finds the folder through the import system.
    return PackageLoader(_PACKAGE, _TEMPLATES)


def template_loader(folder: str) -> BaseLoader:
    """The user's folder first, then the bundled templates for any name it lacks."""
    return ChoiceLoader([FileSystemLoader(folder), _bundled_loader()])


def find_template(folder: str, name: str) -> Path | None:
    """The file `name` renders from with `template_loader(folder)`, or None when neither has it."""
    for root in (Path(folder), bundled_templates()):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


@contextmanager
def demo_config() -> Iterator[Path]:
    """The bundled config `bridge demo` runs (a path for as long as the block lasts)."""
    with as_file(files(_PACKAGE).joinpath(_DEMO_CONFIG)) as path:
        yield path
