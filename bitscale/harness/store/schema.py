"""ORM tables: ``runs`` (one per cell), ``metrics`` (run, name, value), ``protocols`` (fingerprint -> details),
``cell_experiments`` (experiment, cell hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Protocol(Base):
    """How a score was measured: reference set, feature extractor, sample count, sampler, seed."""

    __tablename__ = "protocols"
    fingerprint: Mapped[str] = mapped_column(String(32), primary_key=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class Run(Base):
    """One cell of a grid, finished (``ok``) or ``failed`` with its traceback. Never overwritten when ok."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell_hash: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    source: Mapped[str] = mapped_column(String(16), default="measured")  # "measured" | "paper"
    experiment: Mapped[str] = mapped_column(String(200), default="")
    family: Mapped[str] = mapped_column(String(100), index=True)
    size: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(100))
    loss: Mapped[str | None] = mapped_column(String(100), nullable=True)
    precision: Mapped[str] = mapped_column(String(64))
    w_bits: Mapped[int] = mapped_column(Integer)
    a_bits: Mapped[int] = mapped_column(Integer)
    w_format: Mapped[str] = mapped_column(String(16))
    a_format: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    num_params: Mapped[int] = mapped_column(BigInteger)
    model_bits: Mapped[float] = mapped_column(Float)
    compute_bits: Mapped[float] = mapped_column(Float)
    effective_weight_bits: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # "ok" | "failed"
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    git_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    device: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime)
    timings: Mapped[dict[str, float]] = mapped_column(JSON)
    protocol_fingerprint: Mapped[str | None] = mapped_column(ForeignKey("protocols.fingerprint"), nullable=True)
    #: Path of the cell's kept samples (``<sha256>.npz``, ADM layout), when the run kept them.
    samples: Mapped[str | None] = mapped_column(String(1000), nullable=True)

    metrics: Mapped[list[Metric]] = relationship(back_populates="run", cascade="all, delete-orphan")
    protocol: Mapped[Protocol | None] = relationship()


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    run: Mapped[Run] = relationship(back_populates="metrics")


class CellExperiment(Base):
    """Which experiments include which cells: a shared cell (W16A16) is stored once but belongs to each."""

    __tablename__ = "cell_experiments"
    experiment: Mapped[str] = mapped_column(String(200), primary_key=True)
    cell_hash: Mapped[str] = mapped_column(String(40), primary_key=True)


# Longest string each ``runs`` column holds. Config validation checks names against these, so a
# name that fits one backend fits every backend (PostgreSQL enforces them, SQLite does not).
TEXT_LIMITS: dict[str, int] = {
    c.name: c.type.length for c in Run.__table__.columns if isinstance(c.type, String) and c.type.length
}
