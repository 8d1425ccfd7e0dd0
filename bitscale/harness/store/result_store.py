"""``ResultStore``: open (and migrate) a store, ask which cells are done, record finished cells atomically.

A cell is written in ONE transaction (run row + metrics + protocol) only when it has finished,
so killing the process at any moment loses at most the cell in flight and never leaves half a
result. The unique ``cell_hash`` makes concurrent writers of the same cell harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

import bitscale.harness.store.migrate as schema
from bitscale.harness import faults
from bitscale.harness.errors import BitscaleError
from bitscale.harness.store.defaults import DEFAULT_URL
from bitscale.harness.store.schema import TEXT_LIMITS, CellExperiment, Metric, Protocol, Run
from bitscale.harness.store.urls import normalize_url, redact

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
            raise BitscaleError(
                f"store {self.url}: not a valid database URL; expected DIALECT://USER:PASSWORD@"
                "HOST:PORT/DATABASE or a file path, e.g. sqlite:///results.db"
            ) from None
        self._in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
        if parsed.get_backend_name() == "sqlite" and not self._in_memory:
            self._sqlite_path = Path(parsed.database)
            if not self._sqlite_path.parent.exists():
                raise BitscaleError(f"store {self.url}: folder {self._sqlite_path.parent} does not exist")
        try:
            # pre_ping: a server may drop a connection that sat idle through an hour-long cell.
            self.engine = sa.create_engine(
                self._url, connect_args=self._connect_args(), pool_pre_ping=parsed.get_backend_name() != "sqlite"
            )
        except ModuleNotFoundError as exc:
            extra = " (pip install 'bitscale[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
            raise BitscaleError(f"store {self.url}: database driver {exc.name!r} is not installed{extra}") from None
        except Exception as exc:  # noqa: BLE001 - unknown dialect, bad options
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
            what = (
                "an empty database"
                if not tables
                else f"a database without bitscale's tables ({', '.join(sorted(tables)[:5])})"
            )
            raise BitscaleError(
                f"store {store.url} is {what}, not bitscale results: run `bitscale run --store "
                f"{store.url}` first, or pass another --store"
            )
        schema.check_known(current, store.url)
        if current != schema.head_revision():
            store.migrate()
        return store

    def _connect_args(self) -> dict[str, Any]:
        if self._url.startswith("sqlite"):
            return {"timeout": 60}
        if self._url.startswith("postgresql+psycopg:"):
            return {"connect_timeout": 30}  # an unreachable server is an error, not a hang
        return {}

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
                got = conn.execute(
                    sa.text(f"SELECT {'pg_advisory_lock' if wait else 'pg_try_advisory_lock'}(:k)"), {"k": key}
                ).scalar()
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
        replace_ok: bool = False,
    ) -> bool:
        """Write one finished cell atomically. Returns False if an ``ok`` result for it already exists
        (unless ``replace_ok``: ``bitscale run --force`` replaces it, in the same transaction)."""
        _check_lengths(run)
        with self.session() as s, s.begin():
            existing = s.scalar(sa.select(Run.status).where(Run.cell_hash == run["cell_hash"]))
            if existing is not None:
                if (existing == "ok" and not replace_ok) or (existing != "ok" and not replace_failed):
                    return False
                # A failed attempt is not a result: a successful retry replaces it. A plain DELETE
                # (not the ORM's) because another writer may have replaced it meanwhile.
                statuses = ("failed", "ok") if replace_ok else ("failed",)
                _delete_runs(s, sa.select(Run.id).where(Run.cell_hash == run["cell_hash"], Run.status.in_(statuses)))
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
                    have = set(
                        s.scalars(sa.select(CellExperiment.cell_hash).where(CellExperiment.experiment == experiment))
                    )
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

    def started_at(self, cell_hashes: Iterable[str]) -> dict[str, datetime]:
        """When each stored cell of ``cell_hashes`` was started (those not stored are absent)."""
        wanted = list(set(cell_hashes))
        out: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):  # bounded IN lists
                q = sa.select(Run.cell_hash, Run.started_at).where(Run.cell_hash.in_(wanted[i : i + 500]))
                out.update(dict(conn.execute(q).all()))
        return out

    def delete_runs(self, run_ids: Iterable[int]) -> int:
        """Delete these runs and their metrics in ONE transaction (all or nothing); return how many."""
        ids = sorted(set(run_ids))
        if not ids:
            return 0
        with self._errors_named("deleting runs"), self.session() as s, s.begin():
            deleted = 0
            for i in range(0, len(ids), 500):
                deleted += _delete_runs(s, sa.select(Run.id).where(Run.id.in_(ids[i : i + 500])))
            faults.reach("delete:before-commit")
        return deleted

    def dispose(self) -> None:
        self.engine.dispose()


def _delete_runs(s: Session, ids: sa.Select) -> int:
    """Delete the runs ``ids`` selects, metrics first (no reliance on the database's cascade)."""
    s.execute(sa.delete(Metric).where(Metric.run_id.in_(ids)))
    return s.execute(sa.delete(Run).where(Run.id.in_(ids))).rowcount or 0


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
            raise BitscaleError(
                f"cell {run.get('cell_hash')}: {name} is {len(value)} characters long, "
                f"the store holds at most {limit}; shorten it"
            )


class _NamedErrors:
    """Context manager of :meth:`ResultStore._errors_named`."""

    def __init__(self, store: ResultStore, doing: str) -> None:
        self.store, self.doing = store, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, BitscaleError):
            return False
        if isinstance(exc, SQLAlchemyError) or _is_alembic_error(exc):
            reason = _one_line(getattr(exc, "orig", None) or exc, self.store._url)
            hint = "; is it a bitscale store? pass another --store" if "not a database" in reason else ""
            raise BitscaleError(f"store {self.store.url}: {self.doing}: {reason}{hint}") from None
        return False


def _is_alembic_error(exc: BaseException) -> bool:
    # checked by module name: importing Alembic costs ~0.3 s that reading a current store never needs
    return type(exc).__module__.startswith("alembic.")


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
