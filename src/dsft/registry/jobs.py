"""The job queue: every long operation (prepare, train, eval, pipeline, retrain) is a job.

    queued -> running -> succeeded | failed | cancelled

Claiming is atomic: on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` lets many workers take
different jobs without waiting on each other; on SQLite every transaction takes the write lock
at BEGIN (see db.py), so one claimer at a time. A running job carries its worker's heartbeat;
when the heartbeat is older than `stale_after`, any worker puts the job back in the queue with
`attempt + 1` (its run folder keeps the checkpoints, so training resumes). `attempt` also fences
a run that lost its job: a finish from an older attempt changes nothing.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from dsft.errors import UserError
from dsft.registry import db
from dsft.registry.schema import Job, JobEvent, now

KINDS = ("prepare", "train", "eval", "pipeline", "retrain")
DONE = ("succeeded", "failed", "cancelled")


def stale_after() -> float:
    return float(os.environ.get("DSFT_STALE_SECONDS", "30"))


def submit(kind: str, spec: dict[str, Any], url: str | None = None) -> str:
    if kind not in KINDS:
        raise UserError(f"unknown job kind {kind!r}", f"use one of {', '.join(KINDS)}")
    job_id = str(uuid.uuid4())
    with db.session(url) as s:
        s.add(Job(id=job_id, kind=kind, spec=spec, status="queued"))
        s.add(JobEvent(job_id=job_id, kind="status", data={"status": "queued"}))
    return job_id


def claim(worker: str, url: str | None = None) -> Job | None:
    """Take the oldest queued job for `worker`, or None."""
    with db.session(url) as s:
        q = select(Job).where(Job.status == "queued").order_by(Job.created, Job.id).limit(1)
        if s.bind.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job = s.scalars(q).first()
        if job is None:
            return None
        t = now()
        job.status, job.worker, job.attempt, job.started, job.heartbeat = "running", worker, job.attempt + 1, t, t
        s.add(JobEvent(job_id=job.id, kind="status", data={"status": "running", "worker": worker,
                                                          "attempt": job.attempt}))
    return job


def heartbeat(job_ids: list[str], worker: str, url: str | None = None) -> list[str]:
    """Refresh the heartbeat of `job_ids` still ours; returns those whose cancel was requested."""
    if not job_ids:
        return []
    with db.session(url) as s:
        s.execute(update(Job).where(Job.id.in_(job_ids), Job.worker == worker, Job.status == "running")
                  .values(heartbeat=now()))
        return list(s.scalars(select(Job.id).where(Job.id.in_(job_ids), Job.cancel_requested.is_(True))))


def requeue_stale(url: str | None = None, older_than: float | None = None) -> list[str]:
    """Running jobs whose worker stopped beating go back to the queue."""
    cutoff = now() - timedelta(seconds=older_than if older_than is not None else stale_after())
    requeued = []
    with db.session(url) as s:
        q = select(Job).where(Job.status == "running", Job.heartbeat < cutoff)
        if s.bind.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        for job in s.scalars(q):
            lost = job.worker
            if job.cancel_requested:
                job.status, job.finished, job.worker = "cancelled", now(), None
                s.add(JobEvent(job_id=job.id, kind="status", data={"status": "cancelled", "why": f"worker {lost} died"}))
                continue
            job.status, job.worker = "queued", None
            s.add(JobEvent(job_id=job.id, kind="status", data={"status": "queued", "why": f"worker {lost} stopped "
                                                              "responding; re-queued to resume"}))
            requeued.append(job.id)
    return requeued


def requeue(job_id: str, attempt: int, why: str, url: str | None = None) -> bool:
    """Put a running attempt back in the queue (its worker is shutting down)."""
    with db.session(url) as s:
        n = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
                      .values(status="queued", worker=None)).rowcount
        if n:
            s.add(JobEvent(job_id=job_id, kind="status", data={"status": "queued", "why": why}))
    return bool(n)


def event(job_id: str, kind: str, data: dict[str, Any], url: str | None = None) -> None:
    with db.session(url) as s:
        s.add(JobEvent(job_id=job_id, kind=kind, data=data))


def finish(job_id: str, attempt: int, status: str, result: dict[str, Any] | None = None, error: str | None = None,
           url: str | None = None) -> bool:
    """Record the outcome of `attempt`; False (and nothing written) if the job moved on meanwhile."""
    assert status in DONE
    with db.session(url) as s:
        n = s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
                      .values(status=status, result=result, error=error, finished=now(), worker=None)).rowcount
        if n:
            s.add(JobEvent(job_id=job_id, kind="status", data={"status": status, **({"error": error} if error else {})}))
    return bool(n)


def cancel(job_id: str, url: str | None = None) -> str:
    """Queued: cancelled at once. Running: its worker stops the run at the next step, after a checkpoint.
    Returns the status the job had."""
    with db.session(url) as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            raise UserError(f"no job {job_id}", "see the job list", exit_code=1)
        before = job.status
        if job.status == "queued":
            job.status, job.finished = "cancelled", now()
            s.add(JobEvent(job_id=job_id, kind="status", data={"status": "cancelled"}))
        elif job.status == "running":
            job.cancel_requested = True
            s.add(JobEvent(job_id=job_id, kind="cancel_requested", data={}))
        return before


SHORT_ID = 8  # characters of a job id that `dsft jobs list` shows (unique prefixes are accepted, as git does)


def full_id(prefix: str, url: str | None = None) -> str:
    """The job id that `prefix` starts (the whole id, or a unique prefix of at least 4 characters)."""
    with db.session(url) as s:
        if s.get(Job, prefix) is not None:
            return prefix
        found = [] if len(prefix) < 4 else list(s.scalars(select(Job.id).where(Job.id.startswith(prefix)).limit(6)))
    if not found:
        raise UserError(f"no job {prefix}", "see `dsft jobs list` (give at least 4 characters of an id)", exit_code=1)
    if len(found) > 1:
        raise UserError(f"{prefix} starts {'more than 5' if len(found) > 5 else len(found)} job ids: "
                        f"{', '.join(found[:5])}", "give more characters", exit_code=1)
    return found[0]


def get(job_id: str, url: str | None = None) -> Job:
    with db.session(url) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise UserError(f"no job {job_id}", "see the job list", exit_code=1)
        return job


def events(job_id: str, after: int = 0, url: str | None = None) -> list[JobEvent]:
    with db.session(url) as s:
        return list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
                              .order_by(JobEvent.id)))


def job_dict(job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "status": job.status, "spec": job.spec, "result": job.result,
            "error": job.error, "attempt": job.attempt, "worker": job.worker, "cancel_requested": job.cancel_requested,
            "created": job.created.isoformat(), "started": job.started and job.started.isoformat(),
            "finished": job.finished and job.finished.isoformat()}


def event_dict(e: JobEvent) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind, "data": e.data, "at": e.created.isoformat()}


def listing(status: str | None = None, kind: str | None = None, limit: int = 100, url: str | None = None) -> list[Job]:
    with db.session(url) as s:
        q = select(Job).order_by(Job.created.desc()).limit(limit)
        if status:
            q = q.where(Job.status == status)
        if kind:
            q = q.where(Job.kind == kind)
        return list(s.scalars(q))
