"""The PostgreSQL suite cannot be silently green in CI: with `$CI` set, an unreachable
database fails the tests that need it; without `$CI` (a laptop) they skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Nothing listens on port 9 (discard) of 127.0.0.1 on a test machine.
NOWHERE = "postgresql://postgres@127.0.0.1:9/test"


def run_one_postgres_test(*, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["BRIDGE_TEST_POSTGRES"] = NOWHERE
    if ci:
        env["CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_store_contract.py", "-k", "test_jobs_round_trip and postgresql"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "laptop"])
def test_an_unreachable_postgres_fails_under_ci_and_skips_elsewhere(ci: bool) -> None:
    result = run_one_postgres_test(ci=ci)
    out = result.stdout + result.stderr
    if ci:
        assert result.returncode != 0, out
        assert "1 error" in out and "CI is set" in out, out
    else:
        assert result.returncode == 0, out
        assert "1 skipped" in out, out
