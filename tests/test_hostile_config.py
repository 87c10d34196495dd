"""A hostile environment for the config: a broken state database and bad signing secrets.

`bridge run` runs as a real subprocess (`python -m bridge run --config ...`) against a state
file that is corrupt, malformed, locked by another process, in an unwritable directory, in
a missing one, or a directory itself: it must exit non-zero with one line naming the file
and what to check, never a traceback. A `whsec_` secret that is not base64, on a push
source, a terminal source or a webhook sink, is reported by the config loader (and so by
`bridge check`) as `file:line`, without repeating the secret.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.errors import ConfigErrors
from bridge.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, state: str) -> Path:
    rules = tmp_path / "rules.toml"
    rules.write_text(f"""[bridge]
state = "{state}"
listen = "127.0.0.1:0"

[[sources]]
name = "inbox"
kind = "push"
""")
    return rules


def run_bridge(rules: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", "run", "--config", str(rules)],
        capture_output=True, text=True, timeout=40, cwd=REPO, env=env, check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], names: str,
                          *hints: str) -> None:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert names in lines[0]
    for hint in hints:
        assert hint in lines[0], lines[0]


def test_a_corrupt_state_file_stops_run_with_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(b"this is a text file, not a database\n" * 10)
    proc = run_bridge(write_config(tmp_path, f"sqlite:///{state}"))
    assert_one_line_error(proc, str(state), "not a readable SQLite database", "move it aside")


async def _fresh_store(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()
    await store.close()


def test_a_state_database_with_a_damaged_schema_page_stops_run_clearly(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    asyncio.run(_fresh_store(state))
    data = bytearray(state.read_bytes())
    # Page 1 after the 100-byte header holds the schema table: scribble over it.
    data[100:4096] = b"\xab" * (4096 - 100)
    state.write_bytes(bytes(data))
    proc = run_bridge(write_config(tmp_path, f"sqlite:///{state}"))
    assert_one_line_error(proc, str(state), "restore it from a backup")


@pytest.fixture
def locked_database(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state.db"
    holder = sqlite3.connect(state, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE other_process (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO other_process VALUES (1)")
    try:
        yield state
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_state_database_locked_by_another_process_stops_run_clearly(
        tmp_path: Path, locked_database: Path) -> None:
    proc = run_bridge(write_config(tmp_path, f"sqlite:///{locked_database}"))
    assert_one_line_error(proc, str(locked_database), "is locked", "another process")


def _unwritable_directory(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        # Root writes through permission bits; /proc refuses new files to everyone.
        if not Path("/proc/self").is_dir():
            pytest.skip("needs /proc to have a directory root cannot write to")
        return Path("/proc")
    locked = tmp_path / "readonly"
    locked.mkdir(mode=0o500)
    return locked


def test_a_state_file_in_an_unwritable_directory_stops_run_clearly(tmp_path: Path) -> None:
    state = _unwritable_directory(tmp_path) / "bridge-state.db"
    proc = run_bridge(write_config(tmp_path, f"sqlite:///{state}"))
    assert_one_line_error(proc, str(state), "writable")


def test_a_state_file_in_a_missing_directory_stops_run_clearly(tmp_path: Path) -> None:
    state = tmp_path / "no-such-dir" / "state.db"
    proc = run_bridge(write_config(tmp_path, f"sqlite:///{state}"))
    assert_one_line_error(proc, str(state), "does not exist", "change `state`")


def test_a_state_path_that_is_a_directory_stops_run_clearly(tmp_path: Path) -> None:
    state = tmp_path / "a-directory"
    state.mkdir()
    proc = run_bridge(write_config(tmp_path, f"sqlite:///{state}"))
    assert_one_line_error(proc, str(state), "cannot be opened")


# --- malformed Standard Webhooks secrets ------------------------------------------------------

BAD_SECRET = "whsec_this is not base64!!"
EMPTY_SECRET = "whsec_"

SIGNED = {
    "push source": ('[[sources]]\nname = "inbox"\nkind = "push"\nsecret = "{secret}"\n',
                    "sources[0].secret"),
    "terminal source": ('[[sources]]\nname = "terminal"\nkind = "terminal"\n'
                        'connection_token = "conn-token"\nsecret = "{secret}"\n',
                        "sources[0].secret"),
    "webhook sink": ('[[sinks]]\nname = "pager"\nkind = "webhook"\n'
                     'url = "https://hooks.example.com/x"\nsecret = "{secret}"\n',
                     "sinks[0].secret"),
}


@pytest.mark.parametrize("secret", [BAD_SECRET, EMPTY_SECRET])
@pytest.mark.parametrize("where", sorted(SIGNED))
def test_a_malformed_signing_secret_is_a_config_error_at_its_line(where: str, secret: str
                                                                  ) -> None:
    table, path = SIGNED[where]
    text = "# signing secrets\n\n" + table.format(secret=secret)
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", {})
    (error,) = caught.value.errors
    line = text.splitlines().index(f'secret = "{secret}"') + 1
    assert error.render().startswith(f"rules.toml:{line}: {path}: ")
    assert "whsec_" in error.detail
    assert BAD_SECRET.removeprefix("whsec_") not in error.render()


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    "whsec_c2lua3NlY3JldHNpbmtzZWNyZXQ"])
@pytest.mark.parametrize("where", sorted(SIGNED))
def test_a_well_formed_signing_secret_is_accepted(where: str, secret: str) -> None:
    table, _ = SIGNED[where]
    parse_config(table.format(secret=secret), "rules.toml", {})


def test_check_reports_a_malformed_webhook_secret_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[bridge]\nstate = "sqlite:///{tmp_path}/s.db"\n\n'
                     + SIGNED["webhook sink"][0].format(secret=BAD_SECRET))
    assert main(["check", "--config", str(rules)]) == 1
    err = capsys.readouterr().err
    assert f"{rules}:8: sinks[0].secret: the secret is not 'whsec_' followed by base64" in err
    assert "this is not base64" not in err
