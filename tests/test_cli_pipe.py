"""A command whose reader goes away (`bridge outbox | head`) ends quietly, with no traceback."""

from __future__ import annotations

import subprocess
import sys


def test_output_into_a_closed_pipe_ends_without_a_traceback() -> None:
    child = subprocess.Popen([sys.executable, "-m", "bridge", "schema"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    # Closed before the child has finished importing, so its first write meets a closed pipe.
    child.stdout.close()
    with child.stderr:
        errors = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert "Traceback" not in errors and "BrokenPipeError" not in errors
