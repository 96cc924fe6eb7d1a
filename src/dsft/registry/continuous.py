"""Continuous training: examples arrive, a retrain runs, the champion moves only if the new model wins.

`add_examples` judges each example on arrival with the same scanner as `dsft data prepare`
(issue 2's codes); rejected ones are stored with their reasons for review, never dropped. A
retrain starts on `trigger`, when the buffer reaches `threshold`, or every `schedule_seconds`
when the buffer is not empty. The retrain job:

    prepare(champion's training data + buffered examples, deduplicated)
    -> train (warm start from the champion, or from the base)
    -> eval compare: champion vs new, on a fixed validation set
    -> register the new version (always: its metrics and the verdict are the record)
    -> move `champion` only if new[gate.metric] - champion[gate.metric] >= gate.margin (and > 0)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update

from dsft.errors import UserError
from dsft.home import dsft_home, relative_to_home
from dsft.registry import db, jobs, store, tasks
from dsft.registry.schema import Alias, Example, Job, Setting, now


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field("tool_args_exact_match", description="eval compare metric that decides (higher is better).")
    margin: float = Field(0.0, ge=-1e6, le=1e6, description="how much better than the champion the new model must be.")


class Policy(BaseModel):
    """The continuous-training policy (PUT /api/finetuning/continuous/config)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("lightdom", description="registered model name the loop maintains.")
    threshold: int = Field(100, gt=0, le=10**9, description="buffered examples that start a retrain.")
    schedule_seconds: float | None = Field(None, gt=0, le=10**8,
                                           description="also retrain this often when the buffer is not empty.")
    warm_start: bool = Field(True, description="continue from the champion's weights (else from the base).")
    base_model: str = Field("tiny", description="base model when there is no champion (hub id or folder in DSFT_HOME).")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="dotted training-config overrides.")
    tools: str | None = Field(None, description="tools file (inside DSFT_HOME) for examples that declare none.")
    validation_dataset: str | None = Field(None, description="fixed validation set (dataset id); default: the "
                                                             "champion's, else the first retrain's.")
    eval_limit: int = Field(100, gt=0, le=10**6)
    gate: Gate = Field(default_factory=Gate)


KEY = "continuous"


def policy(url: str | None = None) -> Policy:
    with db.session(url) as s:
        row = s.get(Setting, KEY)
        return Policy.model_validate(row.value if row else {})


def set_policy(p: Policy, url: str | None = None) -> Policy:
    store.check_name(p.name)
    with db.session(url) as s:
        row = s.get(Setting, KEY, with_for_update=True)
        if row is None:
            s.add(Setting(key=KEY, value=p.model_dump()))
        else:
            row.value = p.model_dump()
    return p


def add_examples(examples: list[Any], url: str | None = None) -> dict[str, Any]:
    """Judge and store each example; start a retrain when the buffer reaches the threshold."""
    from dsft.data.layouts import load_tools
    from dsft.data.pipeline import Options, Scanner
    from dsft.data.sources import Record

    pol = policy(url)
    tools = load_tools(tasks.home_path(pol.tools)) if pol.tools else None
    scanner = Scanner(Options(tools=tools))
    verdicts = []
    with db.session(url) as s:
        for k, ex in enumerate(examples):
            row = scanner.judge(Record("<request>", k + 1, "", ex))
            findings = [{"code": f.code, "severity": f.severity, "message": f.message} for f in row.findings]
            stored = Example(status="rejected" if row.rejected else "buffered",
                             data=ex if isinstance(ex, dict) else {"value": ex}, findings=findings)
            s.add(stored)
            s.flush()
            verdicts.append({"index": k, "id": stored.id, "accepted": not row.rejected, "findings": findings})
    started = maybe_retrain("threshold", url)
    return {"accepted": sum(v["accepted"] for v in verdicts), "rejected": sum(not v["accepted"] for v in verdicts),
            "examples": verdicts, "retrain_job": started, **buffer_counts(url)}


def buffer_counts(url: str | None = None) -> dict[str, int]:
    with db.session(url) as s:
        rows = s.execute(select(Example.status, func.count()).group_by(Example.status)).all()
    counts = {status: n for status, n in rows}
    return {"buffered": counts.get("buffered", 0), "rejected_total": counts.get("rejected", 0),
            "used": counts.get("used", 0)}


def _active_retrain(s) -> Job | None:
    return s.scalars(select(Job).where(Job.kind == "retrain", Job.status.in_(("queued", "running")))
                     .order_by(Job.created.desc()).limit(1)).first()


def _last_retrain(s) -> Job | None:
    return s.scalars(select(Job).where(Job.kind == "retrain").order_by(Job.created.desc()).limit(1)).first()


def maybe_retrain(reason: str, url: str | None = None) -> str | None:
    """Submit a retrain if `reason` applies now and none is queued or running; returns its job id."""
    pol = policy(url)
    with db.session(url) as s:
        if s.bind.dialect.name == "postgresql":  # one submitter at a time
            s.execute(select(func.pg_advisory_xact_lock(727275)))
        if _active_retrain(s) is not None:
            return None
        buffered = s.scalar(select(func.count()).where(Example.status == "buffered")) or 0
        if reason == "threshold" and buffered < pol.threshold:
            return None
        if reason == "schedule":
            last = _last_retrain(s)
            due = pol.schedule_seconds is not None and buffered > 0 and (
                last is None or _aware(last.created) + timedelta(seconds=pol.schedule_seconds) <= now())
            if not due:
                return None
        if reason == "trigger" and buffered == 0:
            raise UserError("the buffer is empty: nothing new to train on", "add examples first (add-example)",
                            exit_code=1)
        import uuid

        from dsft.registry.schema import JobEvent

        job_id = str(uuid.uuid4())
        s.add(Job(id=job_id, kind="retrain", spec={"reason": reason, "buffered": buffered}, status="queued"))
        s.add(JobEvent(job_id=job_id, kind="status", data={"status": "queued", "reason": reason}))
    return job_id


def _aware(t):
    from datetime import UTC

    return t if t.tzinfo else t.replace(tzinfo=UTC)


def status(url: str | None = None) -> dict[str, Any]:
    pol = policy(url)
    counts = buffer_counts(url)
    with db.session(url) as s:
        last = _last_retrain(s)
        active = _active_retrain(s)
        champion = s.get(Alias, (pol.name, "champion"))
        last_done = s.scalars(select(Job).where(Job.kind == "retrain", Job.status.in_(jobs.DONE))
                              .order_by(Job.created.desc()).limit(1)).first()
    next_trigger: dict[str, Any] = {"threshold": pol.threshold, "remaining": max(0, pol.threshold - counts["buffered"])}
    if pol.schedule_seconds:
        base = _aware(last.created) if last else now()
        next_trigger["scheduled_at"] = (base + timedelta(seconds=pol.schedule_seconds)).isoformat()
    return {"policy": pol.model_dump(), **counts, "champion": f"{pol.name}:{champion.version}" if champion else None,
            "active_job": active.id if active else None,
            "last_run": None if last_done is None else {
                "job_id": last_done.id, "status": last_done.status, "finished": last_done.finished and
                last_done.finished.isoformat(), "verdict": (last_done.result or {}).get("verdict"),
                "reason": (last_done.result or {}).get("reason") or last_done.error},
            "next_trigger": next_trigger}


def retrain(spec: dict[str, Any], ctx: tasks.Context) -> dict[str, Any]:
    url = ctx.url
    pol = policy(url)
    work = dsft_home() / "jobs" / ctx.job_id
    work.mkdir(parents=True, exist_ok=True)
    with db.session(url) as s:
        taken = s.scalars(select(Example).where(Example.status == "buffered").order_by(Example.id)).all()
        ids = [e.id for e in taken]
        new_rows = [e.data for e in taken]
        champion = None
        alias = s.get(Alias, (pol.name, "champion"))
        if alias is not None:
            champion = store.resolve(s, f"{pol.name}@champion")
    if not new_rows:
        raise UserError("the buffer is empty: nothing new to train on", "add examples first")
    new_file = work / "new_examples.jsonl"
    new_file.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in new_rows))
    inputs = [relative_to_home(new_file)]
    if champion is not None and champion.dataset_id:
        train_file, _ = tasks.dataset_files(champion.dataset_id, url)
        inputs.insert(0, relative_to_home(train_file))
    ctx.phase("data", new=len(new_rows), champion=champion and f"{champion.name}:{champion.version}")
    prep = tasks.prepare({"inputs": inputs, "tools": pol.tools, "seed": 0}, ctx)
    validation = pol.validation_dataset or (champion.dataset_id if champion is not None else None) or prep["dataset_id"]
    if pol.validation_dataset is None:  # fix it for every later retrain, so verdicts compare alike
        set_policy(pol.model_copy(update={"validation_dataset": validation}), url)
    overrides = {"model.name_or_path": pol.base_model, **pol.train_overrides}
    init = champion.artifact if (champion is not None and pol.warm_start) else None
    trained = tasks.train({"overrides": overrides, "dataset_id": prep["dataset_id"], "init_from": init}, ctx)
    baseline = f"{champion.name}:{champion.version}" if champion is not None else pol.base_model
    compared = tasks.evaluate({"baseline": baseline, "model": trained["run"], "dataset_id": validation,
                               "limit": pol.eval_limit}, ctx)
    metric = compared["metrics"].get(pol.gate.metric)
    if metric is None:
        raise UserError(f"gate metric {pol.gate.metric!r} is not among {sorted(compared['metrics'])}",
                        "set continuous.gate.metric to one of them")
    old, new = metric["baseline"], metric["model"]
    delta = new - old
    promote = delta >= pol.gate.margin and delta > 0
    reason = (f"{pol.gate.metric} {old:.3f} -> {new:.3f} (delta {delta:+.3f}, margin {pol.gate.margin:+.3f}): "
              + ("better, promoted" if promote else "not better by the margin, champion kept"))
    metrics = {k: v["model"] for k, v in compared["metrics"].items()}
    metrics.update(train_loss=trained["train_loss"], eval_loss=trained["eval_loss"])
    mv = store.register(store.Registration(pol.name, tasks.home_path(trained["run"]), dataset_id=prep["dataset_id"],
                                           metrics=metrics, job_id=ctx.job_id,
                                           description=f"retrain ({spec.get('reason', 'trigger')}): {reason}"), url)
    if promote:
        store.set_alias(pol.name, "champion", mv.version, f"retrain {ctx.job_id}: {reason}", url)
        verdict = "promoted"
    else:
        verdict = "kept"
    with db.session(url) as s:
        s.execute(update(Example).where(Example.id.in_(ids)).values(status="used", job_id=ctx.job_id))
    ctx.event("verdict", verdict=verdict, reason=reason, version=mv.version)
    return {"verdict": verdict, "reason": reason, "registered": f"{mv.name}:{mv.version}",
            "champion_before": baseline, "validation_dataset": validation, "dataset_id": prep["dataset_id"],
            "examples_used": len(ids), "metrics": compared["metrics"]}
