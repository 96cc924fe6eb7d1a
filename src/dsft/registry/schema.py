"""The tables. JSON columns hold what has its own schema elsewhere (configs, reports, metrics)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Dataset(Base):
    """A prepared dataset; its id is the content hash `dsft data prepare` computes."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)  # relative to DSFT_HOME
    counts: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any]]
    job_id: Mapped[str | None] = mapped_column(String(36))
    created: Mapped[datetime] = mapped_column(default=now)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued running succeeded failed cancelled
    spec: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # runs started; a stale run is re-queued with +1
    worker: Mapped[str | None] = mapped_column(String(128))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=now)
    started: Mapped[datetime | None]
    finished: Mapped[datetime | None]
    heartbeat: Mapped[datetime | None]
    __table_args__ = (Index("ix_jobs_status_created", "status", "created"),)


class JobEvent(Base):
    """An ordered log per job: phase changes, progress, metrics, warnings."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]
    created: Mapped[datetime] = mapped_column(default=now)


class ModelVersion(Base):
    """Immutable once registered: nothing in dsft updates a row of this table."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str] = mapped_column(Text)
    base_hash: Mapped[str | None] = mapped_column(String(64))
    artifact: Mapped[str] = mapped_column(Text)  # adapter or model folder, relative to DSFT_HOME
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # "adapter" | "full"
    dataset_id: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    template_hash: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]]
    job_id: Mapped[str | None] = mapped_column(String(36))
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=now)
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_version"),)


class Alias(Base):
    """A movable pointer (`champion`, `challenger`, any name) to one version of a model."""

    __tablename__ = "aliases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated: Mapped[datetime] = mapped_column(default=now)


class AliasEvent(Base):
    __tablename__ = "alias_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    old_version: Mapped[int | None]
    new_version: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=now)


class Example(Base):
    """An example sent to continuous training: buffered until a retrain uses it, or rejected (kept for review)."""

    __tablename__ = "examples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # buffered | rejected | used
    data: Mapped[dict[str, Any]]
    findings: Mapped[list[Any]]
    job_id: Mapped[str | None] = mapped_column(String(36))  # the retrain that used it
    created: Mapped[datetime] = mapped_column(default=now)


class Setting(Base):
    """Small service-wide settings (the continuous-training policy)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]


class Deployment(Base):
    """A model version put behind a serving target (`dsft serve --name TARGET`), whole or as a canary."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    canary_percent: Mapped[float] = mapped_column(default=100.0)  # share of traffic the new version takes
    previous_id: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending live failed rolled_back superseded
    requested_by: Mapped[dict[str, Any]]
    health: Mapped[dict[str, Any] | None]
    created: Mapped[datetime] = mapped_column(default=now)
    updated: Mapped[datetime] = mapped_column(default=now)


class DeploymentEvent(Base):
    __tablename__ = "deployment_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]
    created: Mapped[datetime] = mapped_column(default=now)


class AbTest(Base):
    """Two or more versions of a model sharing its traffic by weight; clients report outcomes."""

    __tablename__ = "ab_tests"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), index=True)  # the name clients request
    variants: Mapped[list[Any]]  # [{"name", "version", "weight"}]
    metric: Mapped[str] = mapped_column(String(32))  # outcome_rate | rating | latency
    min_samples: Mapped[int] = mapped_column(Integer)
    alpha: Mapped[float] = mapped_column(default=0.05)
    auto_promote: Mapped[bool] = mapped_column(Boolean, default=False)
    alias: Mapped[str] = mapped_column(String(64), default="champion")
    status: Mapped[str] = mapped_column(String(16), default="running")  # running stopped decided
    winner: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=now)


class AbStat(Base):
    """Per-variant counters, incremented by gateways (requests) and clients (outcomes)."""

    __tablename__ = "ab_stats"
    test_id: Mapped[str] = mapped_column(ForeignKey("ab_tests.id", ondelete="CASCADE"), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms_sum: Mapped[float] = mapped_column(default=0.0)
    latency_ms_sq_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")  # for the variance
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    outcomes: Mapped[int] = mapped_column(BigInteger, default=0)
    successes: Mapped[int] = mapped_column(BigInteger, default=0)
    rating_sum: Mapped[float] = mapped_column(default=0.0)
    rating_sq_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
