"""``ResultStore``: open (and migrate) a store, ask which cells are done, record finished cells atomically.

A cell is written in ONE transaction (run row + metrics + protocol) only when it has finished,
so killing the process at any moment loses at most the cell in flight and never leaves half a
result. The unique ``cell_hash`` makes concurrent writers of the same cell harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bitscale.harness.errors import BitscaleError
from bitscale.harness.store.schema import Metric, Protocol, Run

MIGRATIONS = Path(__file__).with_name("migrations")
DEFAULT_URL = "sqlite:///bitscale.db"


def normalize_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite)."""
    return url_or_path if "://" in url_or_path else f"sqlite:///{url_or_path}"


def _alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


class ResultStore:
    """The results database at ``url`` (any SQLAlchemy URL; SQLite files get WAL mode)."""

    def __init__(self, url: str = DEFAULT_URL, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self._sqlite_path: Path | None = None
        parsed = sa.engine.make_url(self.url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._sqlite_path = Path(parsed.database)
            if not self._sqlite_path.parent.exists():
                raise BitscaleError(f"store {self.url}: folder {self._sqlite_path.parent} does not exist")
        try:
            self.engine = sa.create_engine(self.url, connect_args=self._connect_args())
        except Exception as exc:  # bad URL, missing driver
            raise BitscaleError(f"store {url!r}: cannot open: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def _connect_args(self) -> dict[str, Any]:
        return {"timeout": 60} if self.url.startswith("sqlite") else {}

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
                if MigrationContext.configure(conn).get_current_revision() != head:
                    command.upgrade(_alembic_config(conn), "head")
        except OperationalError as exc:
            raise BitscaleError(f"store {self.url}: cannot create or migrate the schema: {exc.orig}") from None

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
        with self.session() as s, s.begin():
            existing = s.scalar(sa.select(Run).where(Run.cell_hash == run["cell_hash"]))
            if existing is not None:
                if existing.status == "ok" or not replace_failed:
                    return False
                s.delete(existing)  # a failed attempt is not a result: a successful retry replaces it
                s.flush()
            if protocol is not None and s.get(Protocol, protocol[0]) is None:
                s.add(Protocol(fingerprint=protocol[0], details=protocol[1]))
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; crash-safe
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def utcnow() -> datetime:
    return datetime.utcnow().replace(microsecond=0)

