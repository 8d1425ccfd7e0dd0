"""``ResultStore``: open (and migrate) a store, ask which cells are done, record finished cells atomically.

A cell is written in ONE transaction (run row + metrics + protocol) only when it has finished,
so killing the process at any moment loses at most the cell in flight and never leaves half a
result. The unique ``cell_hash`` makes concurrent writers of the same cell harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bitscale.harness.errors import BitscaleError
from bitscale.harness.store.schema import TEXT_LIMITS, Metric, Protocol, Run

MIGRATIONS = Path(__file__).with_name("migrations")
DEFAULT_URL = "sqlite:///bitscale.db"


# Any constant works: advisory locks are named by a number, shared by all databases of a server.
# It serialises first migrations the way the ``.lock`` file does for SQLite.
PG_MIGRATION_LOCK = 0x62697473  # "bits"


def normalize_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite).

    ``postgresql://`` (and libpq's ``postgres://``) without a driver means psycopg 3, the driver
    of ``bitscale[postgres]`` (SQLAlchemy 2.0 would otherwise pick psycopg2).
    """
    if "://" not in url_or_path:
        return f"sqlite:///{url_or_path}"
    scheme, rest = url_or_path.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url_or_path


def display_url(url: str) -> str:
    """``url`` as it may be shown or stored: the password replaced by ``***``, even in a malformed URL."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: hide whatever follows "user:" up to "@" (or the end)
        pattern = r"(://[^:/@]*:)[^@]*@" if "@" in url else r"(://[^:/@]*:).*()"
        return re.sub(pattern, r"\1***@" if "@" in url else r"\1***", url)


def _alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


class ResultStore:
    """The results database at ``url`` (any SQLAlchemy URL; SQLite files get WAL mode)."""

    def __init__(self, url: str = DEFAULT_URL, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)  # may hold a password: show ``display_url`` instead
        self.display_url = display_url(self.url)
        self._sqlite_path: Path | None = None
        try:
            parsed = sa.engine.make_url(self.url)
        except Exception as exc:  # noqa: BLE001 - malformed URL
            raise BitscaleError(f"store {self.display_url}: not a valid database URL ({type(exc).__name__}); "
                                "expected e.g. sqlite:///results.db or postgresql://user@host/dbname") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._sqlite_path = Path(parsed.database)
            if not self._sqlite_path.parent.exists():
                raise BitscaleError(f"store {self.display_url}: folder {self._sqlite_path.parent} does not exist")
        try:
            # pre_ping: a server may drop a connection that sat idle through an hour-long cell.
            self.engine = sa.create_engine(self.url, connect_args=self._connect_args(),
                                           pool_pre_ping=parsed.get_backend_name() != "sqlite")
        except ModuleNotFoundError as exc:
            extra = " (pip install 'bitscale[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
            raise BitscaleError(f"store {self.display_url}: database driver {exc.name!r} is not installed{extra}") \
                from None
        except Exception as exc:  # noqa: BLE001 - unknown dialect, bad options
            raise BitscaleError(f"store {self.display_url}: cannot open: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def _connect_args(self) -> dict[str, Any]:
        if self.url.startswith("sqlite"):
            return {"timeout": 60}
        if self.url.startswith("postgresql+psycopg:"):
            return {"connect_timeout": 30}  # an unreachable server is an error, not a hang
        return {}

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        # Two processes opening a fresh SQLite file would both try to create the tables.
        if self._sqlite_path is None:
            yield
            return
        with open(str(self._sqlite_path) + ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision."""
        head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()  # type: ignore[arg-type]
        try:
            with self.engine.connect() as conn:
                if MigrationContext.configure(conn).get_current_revision() == head:
                    return
            with self._migration_lock(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Held until this transaction ends (commit, rollback or a dropped connection of a
                    # killed process); DDL is transactional there, so a migration is all or nothing.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
                if MigrationContext.configure(conn).get_current_revision() != head:
                    command.upgrade(_alembic_config(conn), "head")
        except DBAPIError as exc:  # unreachable server, bad password, no right to create tables
            reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
            raise BitscaleError(f"store {self.display_url}: cannot create or migrate the schema: {reason}") from None

    @contextlib.contextmanager
    def claim(self, cell_hash: str, *, wait: bool = False) -> Iterator[bool]:
        """Hold ``cell_hash`` against other processes using this store while it is computed.

        Yields whether this process holds it (with ``wait``, after waiting for whoever held it).
        The lock dies with its holder, so a killed driver leaves nothing to clean up: on PostgreSQL
        a session advisory lock, on a SQLite file a byte-range lock on ``<file>.claims``.
        Other backends do not claim (two drivers may then compute a cell twice, store it once).
        """
        key = int(cell_hash[:15], 16)  # 60 bits of the hash: a bigint advisory-lock key
        if self.engine.dialect.name == "postgresql":
            # Autocommit: the connection must not sit "idle in transaction" through an hour-long cell.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                got = conn.execute(sa.text(f"SELECT {'pg_advisory_lock' if wait else 'pg_try_advisory_lock'}(:k)"),
                                   {"k": key}).scalar()
                mine = wait or bool(got)
                try:
                    yield mine
                finally:
                    if mine:
                        with contextlib.suppress(DBAPIError):  # a dropped connection released it already
                            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        elif self._sqlite_path is not None:
            with open(str(self._sqlite_path) + ".claims", "a") as fh:
                offset = key % (1 << 40)
                try:
                    fcntl.lockf(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB), 1, offset)
                    mine = True
                except OSError:  # EAGAIN/EACCES: another process holds it
                    mine = False
                try:
                    yield mine
                finally:
                    if mine:
                        fcntl.lockf(fh, fcntl.LOCK_UN, 1, offset)
        else:
            yield True

    def session(self) -> Session:
        return self._session()

    # ------------------------------------------------------------------ queries

    def done_hashes(self, include_failed: bool = True) -> set[str]:
        """Hashes of cells already recorded (``ok``, plus ``failed`` unless retrying failures)."""
        q = sa.select(Run.cell_hash)
        if not include_failed:
            q = q.where(Run.status == "ok")
        with self.session() as s:
            return set(s.scalars(q))

    def is_done(self, cell_hash: str, include_failed: bool = True) -> bool:
        """Whether ``cell_hash`` is recorded now: another driver on the same store may have finished it."""
        q = sa.select(Run.id).where(Run.cell_hash == cell_hash)
        if not include_failed:
            q = q.where(Run.status == "ok")
        with self.engine.connect() as conn:
            return conn.execute(q.limit(1)).first() is not None

    def count(self) -> int:
        with self.session() as s:
            return s.scalar(sa.select(sa.func.count(Run.id))) or 0

    def runs(self) -> list[Run]:
        with self.session() as s:
            return list(s.scalars(sa.select(Run).options(sa.orm.selectinload(Run.metrics))))

    def frame(self):
        """One row per run, one column per metric, as a pandas DataFrame (the leaderboard's input)."""
        import pandas as pd

        cols = [c.name for c in Run.__table__.columns if c.name not in ("config", "error", "timings")]
        with self.engine.connect() as conn:
            runs = pd.read_sql(sa.select(*[Run.__table__.c[c] for c in cols]), conn)
            configs = dict(conn.execute(sa.select(Run.id, Run.config)).all())  # by id: two queries, no shared order
            metrics = pd.read_sql(sa.select(Metric.run_id, Metric.name, Metric.value), conn)
        # Only the plugin options of the config: they tell apart rows such as TopKLD with K=32 and K=64.
        for key in ("quantizer_options", "loss_options"):
            runs[key] = [(configs.get(i) or {}).get(key) or {} for i in runs["id"]]
        if not metrics.empty:
            wide = metrics.pivot(index="run_id", columns="name", values="value")
            runs = runs.merge(wide, left_on="id", right_index=True, how="left")
        return runs

    def protocols(self) -> dict[str, dict[str, Any]]:
        with self.session() as s:
            return {p.fingerprint: p.details for p in s.scalars(sa.select(Protocol))}

    # ------------------------------------------------------------------ writes

    def record(
        self,
        *,
        run: dict[str, Any],
        metrics: dict[str, float],
        protocol: tuple[str, dict[str, Any]] | None,
        replace_failed: bool = True,
    ) -> bool:
        """Write one finished cell atomically. Returns False if an ``ok`` result for it already exists."""
        _check_lengths(run)
        with self.session() as s, s.begin():
            existing = s.scalar(sa.select(Run.status).where(Run.cell_hash == run["cell_hash"]))
            if existing is not None:
                if existing == "ok" or not replace_failed:
                    return False
                # A failed attempt is not a result: a successful retry replaces it. A plain DELETE
                # (not the ORM's) because another writer may have replaced it meanwhile.
                s.execute(sa.delete(Run).where(Run.cell_hash == run["cell_hash"], Run.status == "failed"))
            if protocol is not None:
                _insert_protocol(s, protocol)
            row = Run(**run)
            row.metrics = [Metric(name=k, value=float(v)) for k, v in metrics.items()]
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                # Another process recorded this cell between our check and our insert.
                s.rollback()
                return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def _insert_protocol(s: Session, protocol: tuple[str, dict[str, Any]]) -> None:
    # Concurrent writers record cells of one protocol: the second insert must not fail (it would
    # roll back, and lose, its cell), so the row is inserted unless it exists, in one statement.
    values = {"fingerprint": protocol[0], "details": protocol[1]}
    name = s.get_bind().dialect.name
    if name in ("postgresql", "sqlite"):
        dialect = importlib.import_module(f"sqlalchemy.dialects.{name}")
        s.execute(dialect.insert(Protocol).values(values).on_conflict_do_nothing(index_elements=["fingerprint"]))
    elif s.get(Protocol, protocol[0]) is None:
        s.add(Protocol(**values))


def _check_lengths(run: dict[str, Any]) -> None:
    # SQLite stores any length, PostgreSQL refuses: check here so every backend says the same.
    # (Config validation uses the same limits, so a too-long name is refused before a cell runs.)
    for name, limit in TEXT_LIMITS.items():
        value = run.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise BitscaleError(f"cell {run.get('cell_hash')}: {name} is {len(value)} characters long, "
                                f"the store holds at most {limit}; shorten it")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; crash-safe
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def utcnow() -> datetime:
    return datetime.utcnow().replace(microsecond=0)

