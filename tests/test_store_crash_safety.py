"""The store survives kill -9 at any point of its schema setup and of a write; bad stores are one-line errors.

Kills are deterministic: ``BITSCALE_FAULT=<point>`` makes the child process SIGKILL itself at a
named point (see ``bitscale/harness/faults.py``). Tests take a ``store_url`` so that other
backends (PostgreSQL) can be added to its parameters.
"""

import signal
import sqlite3
import subprocess
import sys

import pytest
import sqlalchemy as sa

from bitscale.cli import main
from bitscale.harness.errors import BitscaleError
from bitscale.harness.store import ResultStore
from bitscale.harness.store.migrate import head_revision
from bitscale.testing import synthetic

OPEN = "import sys; from bitscale.harness.store import ResultStore; ResultStore(sys.argv[1])"
RECORD = """
import sys
from bitscale.harness.store import ResultStore
from bitscale.testing import synthetic
store = ResultStore(sys.argv[1])
for rec in synthetic.records(synthetic.SyntheticGrid(families={"toyvar": {"d1": 1000}}, precisions=["W16A16"],
                                                     seeds=[0, 1])):
    store.record(**rec)
"""
# Statements of a fresh setup: after the 1st (Alembic's version table), in the middle of the
# first revision, after the first revision's version row, and just before the final COMMIT.
KILL_POINTS = [1, 3, 7, 9, 12]


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    """A URL for a store that does not exist yet, one per backend under test."""
    return f"sqlite:///{tmp_path / 'store.db'}"


def _killed_at(point: str, url: str, code: str = OPEN) -> None:
    env = {"BITSCALE_FAULT": point, "BITSCALE_NO_ENTRYPOINTS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code, url],
        env={**env, "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point}: {proc.stderr[-500:]}"


@pytest.mark.parametrize("n", KILL_POINTS)
def test_kill_during_schema_setup_leaves_a_usable_store(store_url, n):
    _killed_at(f"migrate:ddl-{n}", store_url)
    store = ResultStore(store_url)  # used to fail forever: "table protocols already exists"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()
    assert (
        synthetic.fill(store, synthetic.SyntheticGrid(families={"t": {"d1": 10}}, precisions=["W16A16"], seeds=[0]))
        == 1
    )


def test_kill_before_a_commit_loses_only_the_cell_in_flight(store_url):
    _killed_at("record:before-commit", store_url, RECORD)
    store = ResultStore(store_url)
    assert store.count() == 0  # the first cell was written but not committed: nothing of it remains
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM metrics").scalar() == 0


def test_a_half_created_store_of_an_older_bitscale_is_set_up_again(tmp_path):
    # What a kill during the non-transactional setup of earlier versions left behind.
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE protocols (fingerprint VARCHAR(32) PRIMARY KEY, details JSON NOT NULL)")
    store = ResultStore(f"sqlite:///{path}")
    assert store.count() == 0


def test_another_programs_database_is_refused_untouched(tmp_path, capsys):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (x)")
        conn.execute("INSERT INTO runs VALUES (1)")
    with pytest.raises(BitscaleError, match="not a bitscale store"):
        ResultStore(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT x FROM runs").fetchall() == [(1,)]


def _bad_store(kind: str, tmp_path) -> str:
    path = tmp_path / "bad.db"
    if kind == "not-a-database":
        path.write_bytes(b"\x00garbage, not SQLite" * 100)
    elif kind == "newer-schema":
        ResultStore(f"sqlite:///{path}").dispose()
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '9999'")
    elif kind == "malformed-url":
        return "postgresql://user:hunter2"
    return str(path)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not-a-database", "file is not a database; is it a bitscale store"),
        ("newer-schema", "schema revision '9999', newer than this bitscale knows"),
        ("malformed-url", "not a valid database URL"),
    ],
)
@pytest.mark.parametrize("command", ["leaderboard", "check"])
def test_unusable_stores_are_one_line_input_errors(tmp_path, capsys, kind, message, command):
    store = _bad_store(kind, tmp_path)
    baseline = tmp_path / "b.json"
    synthetic_store = ResultStore(f"sqlite:///{tmp_path / 'ok.db'}")
    synthetic.fill(synthetic_store, synthetic.SyntheticGrid(families={"t": {"d1": 10}}, precisions=["W16A16"]))
    assert main(["baseline", "export", "--store", str(tmp_path / "ok.db"), "--out", str(baseline)]) == 0
    capsys.readouterr()
    argv = {"leaderboard": ["leaderboard"], "check": ["check", "--baseline", str(baseline)]}[command]
    assert main([*argv, "--store", store]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "hunter2" not in err
    assert err.startswith("bitscale: error: store ")


def test_a_read_command_creates_no_schema_in_an_empty_file(tmp_path, capsys):
    empty = tmp_path / "empty.db"
    empty.touch()
    baseline = tmp_path / "b.json"
    synthetic.fill(
        ResultStore(f"sqlite:///{tmp_path / 'ok.db'}"),
        synthetic.SyntheticGrid(families={"t": {"d1": 10}}, precisions=["W16A16"]),
    )
    assert main(["baseline", "export", "--store", str(tmp_path / "ok.db"), "--out", str(baseline)]) == 0
    capsys.readouterr()
    assert main(["check", "--baseline", str(baseline), "--store", str(empty)]) == 2
    assert main(["leaderboard", "--store", str(empty)]) == 2
    assert "is an empty database, not bitscale results" in capsys.readouterr().err
    assert sa.inspect(sa.create_engine(f"sqlite:///{empty}")).get_table_names() == []
