"""bridge/ uses only the public API of Jinja, MarkupSafe and the stdlib's json.

A private name (`_`-prefixed, or a module the library does not document) can change in any
minor release; in the template sandbox that could quietly open a way out. This reads every
module under bridge/ and fails naming the file and line of each use.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parent.parent / "bridge"

# The documented modules of each library (Jinja's API docs name jinja2.sandbox.* and
# jinja2.runtime.Context/Undefined; jinja2.compiler, jinja2.utils, json.encoder are internals).
PUBLIC_MODULES = {
    "jinja2": {"jinja2", "jinja2.sandbox", "jinja2.runtime", "jinja2.exceptions",
               "jinja2.loaders", "jinja2.ext", "jinja2.nativetypes", "jinja2.meta"},
    "markupsafe": {"markupsafe"},
    "json": {"json"},
}
# Names without an underscore that are still internals of those libraries.
INTERNAL_NAMES = {
    "root_render_func", "handle_exception", "code_generator_class", "context_class",
    "CodeGenerator", "Frame", "c_encode_basestring", "py_encode_basestring",
    "encode_basestring", "encode_basestring_ascii", "c_make_encoder", "new_context",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in PUBLIC_MODULES else None


def problems(source: str, filename: str) -> Iterator[str]:
    """Each use of a library's private name in `source`, as `file:line: what`."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> the library module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for what in _imports(node, aliases):
                yield f"{filename}:{node.lineno}: {what}"
    for node in ast.walk(tree):
        for what in _uses(node, aliases):
            yield f"{filename}:{node.lineno}: {what}"


def _imports(node: ast.Import | ast.ImportFrom, aliases: dict[str, str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            library = _library(alias.name)
            if library is None:
                continue
            if alias.name not in PUBLIC_MODULES[library]:
                yield f"imports module {alias.name}"
            top = alias.name.split(".")[0]
            aliases[alias.asname or top] = alias.name if alias.asname else top
        return
    library = _library(node.module or "")
    if library is None:
        return
    if node.module not in PUBLIC_MODULES[library]:
        yield f"imports from module {node.module}"
    for alias in node.names:
        if _private(alias.name) or alias.name in INTERNAL_NAMES:
            yield f"imports {node.module}.{alias.name}"


def _uses(node: ast.AST, aliases: dict[str, str]) -> Iterator[str]:
    if isinstance(node, ast.FunctionDef) and node.name in INTERNAL_NAMES:
        yield f"overrides {node.name}"
    if isinstance(node, ast.ClassDef):
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in INTERNAL_NAMES:
                yield f"subclasses {base.id}"
    if not isinstance(node, ast.Attribute):
        return
    if node.attr in INTERNAL_NAMES:
        yield f"uses .{node.attr}"
    dotted = _dotted(node)
    if dotted is None or dotted.split(".")[0] not in aliases:
        return
    head, *rest = dotted.split(".")
    parts = [aliases[head], *rest]
    if any(_private(p) for p in parts):
        yield f"uses {'.'.join(parts)}"
    # `json.encoder.x`: a submodule must be a public one (`jinja2.Environment.x` is a class).
    module = ".".join(parts[:-1])
    library = _library(parts[0])
    if library and len(parts) > 2 and parts[1].islower() and (
            module not in PUBLIC_MODULES[library]):
        yield f"uses module {module}"


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def test_bridge_uses_no_private_names_of_jinja_markupsafe_or_json() -> None:
    found = []
    for path in sorted(BRIDGE.rglob("*.py")):
        found.extend(problems(path.read_text(encoding="utf-8"), str(path.relative_to(BRIDGE))))
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "from jinja2.compiler import CodeGenerator",
        "from jinja2 import _FinalizeInfo",
        "import json\nx = json.encoder.c_encode_basestring",
        "import json.encoder",
        "from json.encoder import py_encode_basestring",
        "import jinja2\njinja2.runtime._PassArg",
        "import jinja2 as j\nj.compiler.CodeGenerator",
        "def f(t, c):\n    return t.root_render_func(c)",
        "class E:\n    code_generator_class = object\n    def handle_exception(self): ...",
    ],
)
def test_the_check_finds_private_uses(source: str) -> None:
    assert list(problems(source, "x.py")), source


def private_attributes(source: str, filename: str) -> Iterator[str]:
    """`x._name` where x is not self/cls: in the render modules that is a library internal."""
    for node in ast.walk(ast.parse(source, filename)):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})):
            yield f"{filename}:{node.lineno}: uses .{node.attr}"


def test_the_attribute_check_finds_a_library_objects_private_attribute() -> None:
    assert list(private_attributes("def f(u):\n    u._fail_with_undefined_error()", "x.py"))
    assert not list(private_attributes("class A:\n    def f(self):\n        self._x = 1", "x.py"))


def test_the_render_modules_touch_no_private_attribute_of_another_object() -> None:
    found = []
    for name in ("render.py", "filters.py"):
        path = BRIDGE / name
        found.extend(private_attributes(path.read_text(encoding="utf-8"), name))
    assert found == []
