"""A store password is never printed or written: run summary, errors, gate summary, baseline file, HTML page.

The store here is SQLite reached through a URL that carries credentials (a dialect that ignores
them), so every command runs for real while its URL holds a password as a PostgreSQL one would.
"""

import pytest
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from bitscale.cli import main
from bitscale.harness.errors import BitscaleError
from bitscale.harness.store import ResultStore
from bitscale.harness.store.urls import redact
from bitscale.testing.toy import ToyFamily

SECRET = "s3cr3t-Pa55"


class SQLiteWithCredentials(SQLiteDialect_pysqlite):
    """SQLite that accepts (and ignores) a user and password in its URL."""

    supports_statement_cache = True

    def create_connect_args(self, url):
        return super().create_connect_args(url._replace(username=None, password=None, host=None))


registry.register("sqlitepw", __name__, "SQLiteWithCredentials")


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"postgresql://user:{SECRET}@db.example:5432/bench", "postgresql://user:***@db.example:5432/bench"),
        (
            f"postgresql+psycopg://user:{SECRET}@db/bench?sslmode=require",
            "postgresql+psycopg://user:***@db/bench?sslmode=require",
        ),
        (f"postgresql://user:{SECRET}", "postgresql://user:***"),  # unparseable: the "port" is the password
        (f"postgresql://user:{SECRET}@db:notaport/bench", "postgresql://user:***@db:notaport/bench"),
        ("sqlite:////tmp/a:b.db", "sqlite:////tmp/a:b.db"),
    ],
)
def test_redact_hides_passwords_only(url, shown):
    assert redact(url) == shown


def test_connection_errors_name_the_store_without_its_password():
    # Nothing listens on port 1: the driver's error is shown, the password is not.
    with pytest.raises(BitscaleError) as err:
        ResultStore(f"postgresql+psycopg://user:{SECRET}@127.0.0.1:1/bench")
    assert "postgresql+psycopg://user:***@127.0.0.1:1/bench" in str(err.value) and SECRET not in str(err.value)


def test_no_command_prints_or_writes_the_password(tmp_path, capsys, register_plugin):
    import types

    from bitscale import hookimpl

    plugin = types.ModuleType("toy_plugin")
    plugin.register_models = hookimpl(lambda register: register(ToyFamily()))
    register_plugin(plugin)
    url = f"sqlitepw://bench:{SECRET}@/{tmp_path / 'r.db'}"
    exp = tmp_path / "e.yaml"
    exp.write_text(
        "name: secrets\nmodels: [{family: toy, sizes: [d1]}]\nseeds: [0, 1]\n"
        "evaluation: {num_samples: 100, calibration_batches: 1, batch_size: 100}\n"
    )
    assert main(["run", str(exp), "--store", url, "--no-progress"]) == 0
    assert main(["run", str(exp), "--store", url, "--no-progress"]) == 0  # "... already in URL"
    files = {
        "baseline": tmp_path / "b.json",
        "summary": tmp_path / "summary.md",
        "page": tmp_path / "page.html",
        "json": tmp_path / "check.json",
    }
    assert main(["baseline", "export", "--store", url, "--out", str(files["baseline"]), "--noise-rel-std", "0.05"]) == 0
    assert (
        main(
            [
                "check",
                "--baseline",
                str(files["baseline"]),
                "--store",
                url,
                "--summary",
                str(files["summary"]),
                "--json",
                str(files["json"]),
            ]
        )
        == 0
    )
    assert main(["leaderboard", "--store", url, "--format", "html", "--out", str(files["page"])]) == 0
    assert main(["leaderboard", "--store", url, "--metric", "nonexistent"]) == 2  # an error naming the store
    out, err = capsys.readouterr()
    assert "sqlitepw://bench:***@" in out and "sqlitepw://bench:***@" in err
    assert SECRET not in out + err
    for name, path in files.items():
        assert SECRET not in path.read_text(), f"the password is in the {name} file"
    assert "bench:***@" in files["baseline"].read_text() and "bench:***@" in files["page"].read_text()
