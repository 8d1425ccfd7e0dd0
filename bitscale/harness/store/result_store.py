"""``ResultStore``: open (and migrate) a store, ask which cells are done, record finished cells atomically.

A cell is written in ONE transaction (run row + metrics + protocol) only when it has finished,
so killing the process at any moment loses at most the cell in flight and never leaves half a
result. The unique ``cell_hash`` makes concurrent writers of the same cell harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bitscale.harness import faults
from bitscale.harness.errors import BitscaleError
from bitscale.harness.store import migrate as schema
from bitscale.harness.store.schema import CellExperiment, Metric, Protocol, Run
from bitscale.harness.store.urls import normalize_url, redact

DEFAULT_URL = "sqlite:///bitscale.db"

__all__ = ["DEFAULT_URL", "ResultStore", "normalize_url", "redact", "utcnow"]


class ResultStore:
    """The results database at ``url`` (any SQLAlchemy URL; SQLite files get WAL mode).

    ``url`` is the address *as it may be shown*: its password, if any, is hidden. Every error
    that cannot open, read or set up the store is a ``BitscaleError`` naming that address.
    """

    def __init__(self, url: str = DEFAULT_URL, *, migrate: bool = True) -> None:
        self._url = normalize_url(url)
        self.url = redact(self._url)
        self._sqlite_path: Path | None = None
        try:
            parsed = sa.engine.make_url(self._url)
        except Exception:  # noqa: BLE001 - ArgumentError, or ValueError for a port that is not a number
            # The parser's own message may quote the password (as a "port"): it is not shown.
            raise BitscaleError(f"store {self.url}: not a valid database URL; expected DIALECT://USER:PASSWORD@"
                                "HOST:PORT/DATABASE or a file path, e.g. sqlite:///results.db") from None
        self._in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
        if parsed.get_backend_name() == "sqlite" and not self._in_memory:
            self._sqlite_path = Path(parsed.database)
            if not self._sqlite_path.parent.exists():
                raise BitscaleError(f"store {self.url}: folder {self._sqlite_path.parent} does not exist")
        try:
            self.engine = sa.create_engine(self._url, connect_args=self._connect_args())
        except Exception as exc:  # noqa: BLE001 - bad URL, missing driver
            raise BitscaleError(f"store {self.url}: cannot open: {_one_line(exc, self._url)}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @classmethod
    def open_existing(cls, url: str) -> ResultStore:
        """Open a store for reading: it must hold a bitscale schema already; nothing is created.

        An older schema is upgraded (the data must be readable); an empty database, another
        program's database or a newer schema is a ``BitscaleError``.
        """
        store = cls(url, migrate=False)
        with store._errors_named("cannot read"):
            with store.engine.connect() as conn:
                current = schema.current_revision(conn)
                tables = set(sa.inspect(conn).get_table_names())
        if current is None:
            what = ("an empty database" if not tables else
                    f"a database without bitscale's tables ({', '.join(sorted(tables)[:5])})")
            raise BitscaleError(f"store {store.url} is {what}, not bitscale results: run `bitscale run --store "
                                f"{store.url}` first, or pass another --store")
        schema.check_known(current, store.url)
        if current != schema.head_revision():
            store.migrate()
        return store

    def _connect_args(self) -> dict[str, Any]:
        return {"timeout": 60} if self._url.startswith("sqlite") else {}

    def _errors_named(self, doing: str):
        """Turn driver and Alembic failures into one line naming the store (never its password)."""
        return _NamedErrors(self, doing)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision, atomically (see ``store/migrate.py``)."""
        with self._errors_named("cannot open or set up the schema"):
            with self.engine.connect() as conn:
                if schema.current_revision(conn) == schema.head_revision():
                    return
            if self._in_memory:  # private to this engine's connection; nothing outlives a crash anyway
                schema.upgrade(self.engine, self.url)
                return
            engine = schema.schema_engine(self._url, self._connect_args(), _sqlite_pragmas)
            try:
                schema.upgrade(engine, self.url)
            finally:
                engine.dispose()

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
            faults.reach("record:before-commit")
        return True

    def include(self, experiment: str, cell_hashes: Iterable[str]) -> None:
        """Note that ``experiment`` includes these cells, whichever experiment computed them first.

        Cells shared between experiments (W16A16 does not depend on any quantizer) are stored once,
        under the experiment that ran them first; this membership is what lets ``--experiment X``
        find all of X's cells. Concurrent writers may race on the same rows: a clash is retried.
        """
        wanted = set(cell_hashes)
        if not experiment or not wanted:
            return
        for attempt in range(5):
            try:
                with self.session() as s, s.begin():
                    have = set(s.scalars(sa.select(CellExperiment.cell_hash)
                                         .where(CellExperiment.experiment == experiment)))
                    s.add_all(CellExperiment(experiment=experiment, cell_hash=h) for h in sorted(wanted - have))
                return
            except IntegrityError:
                if attempt == 4:
                    raise

    def experiment_hashes(self, experiment: str) -> set[str]:
        """Hashes of the cells ``experiment`` includes (its own and those it shares with others)."""
        with self.session() as s:
            member = s.scalars(sa.select(CellExperiment.cell_hash).where(CellExperiment.experiment == experiment))
            own = s.scalars(sa.select(Run.cell_hash).where(Run.experiment == experiment))
            return set(member) | set(own)

    def dispose(self) -> None:
        self.engine.dispose()


class _NamedErrors:
    """Context manager of :meth:`ResultStore._errors_named`."""

    def __init__(self, store: ResultStore, doing: str) -> None:
        self.store, self.doing = store, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, BitscaleError):
            return False
        if isinstance(exc, (SQLAlchemyError, CommandError)):
            reason = _one_line(getattr(exc, "orig", None) or exc, self.store._url)
            hint = ("; is it a bitscale store? pass another --store" if "not a database" in reason
                    else "")
            raise BitscaleError(f"store {self.store.url}: {self.doing}: {reason}{hint}") from None
        return False


def _one_line(exc: BaseException, secret_url: str | None = None) -> str:
    """First line of an error, with the full URL (which may hold a password) shown redacted."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if secret_url:
        text = text.replace(secret_url, redact(secret_url))
        password = getattr(_safe_url(secret_url), "password", None)
        if password:
            text = text.replace(str(password), "***")
    return text[:300]


def _safe_url(url: str):
    try:
        return sa.engine.make_url(url)
    except Exception:  # noqa: BLE001
        return None


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; crash-safe
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def utcnow() -> datetime:
    return datetime.utcnow().replace(microsecond=0)

