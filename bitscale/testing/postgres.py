"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temp folder.

The server listens on 127.0.0.1 at a free port (and on a unix socket in the same folder), uses
password authentication over TCP, and is removed when stopped. PostgreSQL refuses to run as
root, so under root it runs as the ``postgres`` system user (Debian's package creates it) via
``runuser``. ``BITSCALE_TEST_POSTGRES_URL`` (an admin URL of an existing server, e.g. a CI
service container) is used instead of starting one.

Usage::

    server = TemporaryPostgres.start(fast=True)   # raises PostgresUnavailable with the reason
    url = server.create_database()                 # a fresh, empty database each call
    server.stop()
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ENV_URL = "BITSCALE_TEST_POSTGRES_URL"
_USER = "bitscale"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started or reached; the message says why (tests skip with it)."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian/Ubuntu keep the server binaries off PATH, one folder per major version.
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TemporaryPostgres:
    admin_url: str  # holds the password: never print it (see ``display``)
    folder: Path | None = None
    _pg_ctl: list[str] = field(default_factory=list)
    _databases: int = 0

    @classmethod
    def start(cls, *, fast: bool = True) -> TemporaryPostgres:
        """Start a server, or use ``$BITSCALE_TEST_POSTGRES_URL``. ``fast`` turns off fsync (tests only)."""
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable("psycopg is not installed (pip install 'bitscale[postgres]')") from None
        if os.environ.get(ENV_URL):
            return cls(admin_url=os.environ[ENV_URL])
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise PostgresUnavailable(
                "PostgreSQL server programs (initdb, pg_ctl) not found; "
                "install them (apt-get install postgresql) or set " + ENV_URL
            )
        run_as: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise PostgresUnavailable("running as root and no runuser to start PostgreSQL as another user")
            run_as = ["runuser", "-u", "postgres", "--"]
        folder = Path(tempfile.mkdtemp(prefix="bitscale-pg-"))
        try:
            if run_as:
                shutil.chown(folder, "postgres")  # raises LookupError without a postgres user
            password = secrets.token_urlsafe(16)
            pwfile = folder / "pw"
            pwfile.write_text(password + "\n")
            if run_as:
                shutil.chown(pwfile, "postgres")
            pwfile.chmod(0o600)
            data = folder / "data"
            _check(
                run_as
                + [
                    initdb,
                    "-D",
                    str(data),
                    "-U",
                    _USER,
                    "--pwfile",
                    str(pwfile),
                    "-E",
                    "UTF8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                    "--no-instructions",
                ],
                "initdb",
            )
            pwfile.unlink()
            opts = f"-c listen_addresses=127.0.0.1 -k {folder} -c max_connections=100"
            if fast:  # throwaway data: durability costs time and buys nothing here
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            pg_ctl_cmd = run_as + [pg_ctl, "-D", str(data)]
            for _attempt in range(3):  # the free port may be taken between probing and binding
                port = _free_port()
                started = subprocess.run(
                    pg_ctl_cmd + ["-w", "-t", "60", "-l", str(folder / "log"), "-o", f"-p {port} {opts}", "start"],
                    capture_output=True,
                    text=True,
                )
                if started.returncode == 0:
                    break
            else:
                raise PostgresUnavailable(f"pg_ctl start failed: {_tail(folder / 'log') or started.stderr.strip()}")
        except PostgresUnavailable:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        except (OSError, LookupError, subprocess.SubprocessError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise PostgresUnavailable(f"cannot start PostgreSQL: {exc}") from None
        return cls(
            admin_url=f"postgresql+psycopg://{_USER}:{password}@127.0.0.1:{port}/postgres",
            folder=folder,
            _pg_ctl=pg_ctl_cmd,
        )

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its SQLAlchemy URL (with the password)."""
        import psycopg
        import sqlalchemy as sa

        self._databases += 1
        name = name or f"t{os.getpid()}_{self._databases}_{secrets.token_hex(3)}"
        admin = sa.engine.make_url(self.admin_url)
        conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return admin.set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.folder is None:
            return
        subprocess.run(self._pg_ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


def _check(cmd: list[str], what: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise PostgresUnavailable(f"{what} failed: {(out.stderr or out.stdout).strip()[-500:]}")


def _tail(log: Path) -> str:
    try:
        return log.read_text().strip()[-500:]
    except OSError:
        return ""
