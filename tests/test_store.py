"""The results store on SQLite and on a real PostgreSQL server: records, races, kills, limits, secrets.

Every test taking ``store``/``store_url`` runs once per backend (see conftest.py); the PostgreSQL
server is started once per session and each test gets a fresh database.
"""

import multiprocessing
import subprocess
import sys
import textwrap
from copy import deepcopy

import pytest
import sqlalchemy as sa

from bitscale.harness.errors import BitscaleError
from bitscale.harness.store import ResultStore
from bitscale.harness.store.schema import TEXT_LIMITS
from bitscale.harness.store.urls import normalize_url
from bitscale.harness.store.urls import redact as display_url
from bitscale.testing import synthetic

GRID = synthetic.SyntheticGrid(
    families={"toyvar": {"d1": 100_000, "d2": 200_000}}, precisions=["W16A16", "W4A16"], seeds=[0, 1]
)


def test_records_queries_and_retries(store):
    recs = synthetic.records(GRID)
    assert synthetic.fill(store, GRID) == len(recs) == 12
    assert store.count() == 12 and store.done_hashes() == {r["run"]["cell_hash"] for r in recs}
    assert store.is_done(recs[0]["run"]["cell_hash"]) and not store.is_done("0" * 20)
    assert not store.record(**recs[0])  # an ok cell is never overwritten
    frame = store.frame()
    assert len(frame) == 12 and frame["fid"].notna().all()
    assert set(store.protocols()) == {r["protocol"][0] for r in recs}
    # A failed cell is done unless retrying; a successful retry replaces it (one row, now ok).
    failed = synthetic.failed_record("toyvar", "d4", 400_000, "W4A16", "rtn")
    assert store.record(**failed)
    h = failed["run"]["cell_hash"]
    assert store.is_done(h) and not store.is_done(h, include_failed=False)
    retry = deepcopy(recs[1])
    retry["run"]["cell_hash"] = h
    assert store.record(**retry)
    assert store.count() == 13 and store.frame().set_index("cell_hash").loc[h, "status"] == "ok"


def _record_after_barrier(url: str, barrier, index: int, queue) -> None:
    # A child process: open a (possibly fresh) store at the same moment as its siblings, record.
    try:
        barrier.wait(timeout=120)
        store = ResultStore(url)
        # Two cells of one protocol, each raced by two processes: the cell's unique hash and the
        # protocol's primary key are both contended.
        rec = synthetic.records(GRID)[(index % 2) * 2]
        queue.put((index, store.record(**rec), None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        queue.put((index, None, f"{type(exc).__name__}: {exc}"))


def test_fresh_store_opened_by_racing_processes_gets_one_schema(store_url):
    # Issue 11 item 3: on PostgreSQL, 4 of 4 synchronised starts gave a UniqueViolation traceback.
    n = 4
    ctx = multiprocessing.get_context("fork")  # children start in milliseconds: the race is real
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_record_after_barrier, args=(store_url, barrier, i, queue)) for i in range(n)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [err for _, _, err in results] == [None] * n
    assert sorted(ok for _, ok, _ in results) == [False, False, True, True]  # two cells, each written once
    store = ResultStore(store_url)
    assert store.count() == 2
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert set(sa.inspect(conn).get_table_names()) == {
            "alembic_version",
            "protocols",
            "runs",
            "metrics",
            "cell_experiments",
        }


# Killing a process during its first migration, on both backends: test_store_crash_safety.py.


def test_text_columns_hold_their_limit_on_every_backend(store):
    rec = synthetic.records(GRID)[0]
    full = deepcopy(rec)
    for name, limit in TEXT_LIMITS.items():
        if name not in ("cell_hash", "protocol_fingerprint", "status"):  # keys with meaning, not names
            full["run"][name] = "x" * limit
    assert store.record(**full)
    assert store.runs()[0].experiment == "x" * TEXT_LIMITS["experiment"]
    # One character more is refused the same way by SQLite (which would store it) and PostgreSQL
    # (which would raise a DataError deep in a flush), and nothing is written.
    over = deepcopy(synthetic.records(GRID)[1])
    over["run"]["experiment"] = "y" * (TEXT_LIMITS["experiment"] + 1)
    with pytest.raises(BitscaleError, match=r"experiment is 201 characters long, the store holds at most 200"):
        store.record(**over)
    assert store.count() == 1


def test_postgres_urls_use_psycopg_3():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize_url("results.db") == "sqlite:///results.db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:s3cr3t-pw@host:5432/db",
        "postgresql://alice:s3cr3t-pw",
        "postgresql://alice:s3cr3t-pw@host:notaport/db",
    ],
)
def test_passwords_are_hidden_even_in_malformed_urls(url):
    shown = display_url(normalize_url(url))
    assert "s3cr3t-pw" not in shown and "alice" in shown and "***" in shown


def test_store_errors_are_one_line_without_the_password(postgres_server):
    good = sa.engine.make_url(postgres_server.create_database())
    wrong = good.set(password="not-the-password-42").render_as_string(hide_password=False)
    with pytest.raises(BitscaleError) as err:
        ResultStore(wrong)
    message = str(err.value)
    assert "not-the-password-42" not in message and "\n" not in message
    assert "password authentication failed" in message and "***" in message
    with pytest.raises(BitscaleError, match="not a valid database URL") as err:
        ResultStore("postgresql://alice:s3cr3t-pw")
    assert "s3cr3t-pw" not in str(err.value)


CLAIM = textwrap.dedent("""
    import sys, time
    from bitscale.harness.store import ResultStore

    with ResultStore(sys.argv[1]).claim(sys.argv[2]) as mine:
        print(mine, flush=True)
        time.sleep(600)  # killed by the test while holding the claim
""")


def test_claims_exclude_other_processes_and_die_with_them(store, tmp_path):
    script = tmp_path / "claim.py"
    script.write_text(CLAIM)
    holder = subprocess.Popen([sys.executable, str(script), store._url, "a" * 20], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with store.claim("a" * 20) as mine:
            assert not mine  # held by the other process
        with store.claim("b" * 20) as mine:
            assert mine  # another cell is free
    finally:
        holder.kill()
        holder.wait()
    with store.claim("a" * 20, wait=True) as mine:  # a killed holder's claim is gone at once
        assert mine


def test_config_name_limit_is_the_store_column():
    from bitscale.harness.config import MAX_NAME_LENGTH

    assert MAX_NAME_LENGTH == TEXT_LIMITS["experiment"]


def test_revisions_read_without_alembic_agree_with_alembic(store):
    """migrate.py reads the revision chain and a store's revision itself (Alembic is imported only to migrate)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from bitscale.harness.store import migrate

    scripts = ScriptDirectory.from_config(migrate._config(None))
    assert migrate.revisions() == {s.revision: s.down_revision for s in scripts.walk_revisions()}
    assert migrate.head_revision() == scripts.get_current_head()
    with store.engine.connect() as conn:
        assert migrate.current_revision(conn) == MigrationContext.configure(conn).get_current_revision()
        assert migrate.current_revision(conn) == migrate.head_revision()
