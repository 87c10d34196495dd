"""Running `bridge ...` in the test's own process, its output captured."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from bridge.cli import main


def run_cli(*args: str) -> tuple[int, str, str]:
    """`bridge ARGS...`: its exit code, what it wrote to stdout and what to stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
