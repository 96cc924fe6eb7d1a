"""The steps a job runs: prepare, train, evaluate (the job-kind table is kinds.py). Runs inside the
job's child process (see child.py).

Every task takes the job's spec (JSON, validated here) and a `Context` that records events and
says when to stop; it returns the job's result (JSON). Files a task reads are inside DSFT_HOME
(the API checks every path a request names); what it writes goes under DSFT_HOME too:
`datasets/<dataset id>/`, `runs/<job id>/`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import UserError
from dsft.home import dsft_home, relative_to_home
from dsft.registry import db, jobs, store


@dataclass
class Context:
    job_id: str
    attempt: int
    should_stop: Callable[[], bool] = lambda: False
    url: str | None = None

    def event(self, kind: str, **data: Any) -> None:
        jobs.event(self.job_id, kind, data, self.url)

    def phase(self, phase_name: str, **data: Any) -> None:
        self.event("phase", phase=phase_name, **data)


class Cancelled(Exception):
    pass


def home_path(p: str | Path) -> Path:
    """A spec's path: relative ones are inside DSFT_HOME."""
    p = Path(p)
    return p if p.is_absolute() else dsft_home() / p


def tiny_model() -> Path:
    """The embedded default base model, built on first use."""
    from dsft.model.tiny import TinySpec, build

    folder = dsft_home() / "models" / "tiny-deepseek_v3"
    if not (folder / "config.json").exists():
        tmp = folder.with_name(f".{folder.name}.{time.time_ns()}")
        build(tmp, TinySpec())
        try:
            tmp.rename(folder)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def base_model(name: str) -> str:
    return str(tiny_model()) if name in ("tiny", "tiny-deepseek_v3") else str(home_path(name) if not _hub_id(name)
                                                                              else name)


def _hub_id(name: str) -> bool:
    return not name.startswith((".", "/")) and name.count("/") <= 1 and not (dsft_home() / name).exists()


# ---------------------------------------------------------------- prepare

def prepare(spec: dict[str, Any], ctx: Context) -> dict[str, Any]:
    from dsft.data.layouts import load_tools
    from dsft.data.pipeline import Options
    from dsft.data.prepare import prepare as run_prepare

    inputs = [home_path(p) for p in spec.get("inputs") or []]
    if not inputs:
        raise UserError("prepare needs inputs", "give the uploaded files' paths in spec.inputs")
    tools = load_tools(home_path(spec["tools"])) if spec.get("tools") else None
    opts = Options(format=spec.get("format"), tools=tools, min_quality=spec.get("min_quality"),
                   near_dup=spec.get("near_dup"), scorer=spec.get("scorer", "dsft"))
    ctx.phase("prepare", inputs=[relative_to_home(p) for p in inputs])
    staging = dsft_home() / "datasets" / f".job-{ctx.job_id}"
    result = run_prepare(inputs, staging, opts, val_ratio=spec.get("val_ratio", 0.1), seed=spec.get("seed", 0),
                         force=True)
    final = dsft_home() / "datasets" / result.dataset_id
    try:
        staging.rename(final)
    except OSError:
        if not (final / "train.jsonl").exists():
            raise
        shutil.rmtree(staging)  # the same content was prepared before (or just now, by another job): one copy
    from sqlalchemy.exc import IntegrityError

    try:
        with db.session(ctx.url) as s:
            store.add_dataset(s, final, result.report, ctx.job_id)
    except IntegrityError:
        pass  # recorded by a concurrent job with the same content
    ctx.event("dataset", dataset_id=result.dataset_id, counts=result.report["counts"])
    return {"dataset_id": result.dataset_id, "path": relative_to_home(final), "counts": result.report["counts"]}


def dataset_files(dataset_id: str, url: str | None = None) -> tuple[Path, Path]:
    from dsft.registry.schema import Dataset

    with db.session(url) as s:
        ds = s.get(Dataset, dataset_id)
        if ds is None:
            raise UserError(f"no dataset {dataset_id}", "prepare one first (create-validation-split)")
        folder = home_path(ds.path)
    return folder / "train.jsonl", folder / "validation.jsonl"


# ---------------------------------------------------------------- train

def train(spec: dict[str, Any], ctx: Context) -> dict[str, Any]:
    from dsft.eval.during_training import ToolAccuracy
    from dsft.train import checkpoint
    from dsft.train.config import load
    from dsft.train.trainer import Interrupted
    from dsft.train.trainer import train as run_train

    overrides = dict(spec.get("overrides") or {})
    raw = dict(spec.get("config") or {})
    model = (raw.get("model") or {}).get("name_or_path") or overrides.pop("model.name_or_path", None) or "tiny"
    run_dir = dsft_home() / "runs" / ctx.job_id
    overrides["model.name_or_path"] = base_model(model)
    overrides["output.dir"] = str(run_dir)
    if spec.get("dataset_id"):
        train_file, val_file = dataset_files(spec["dataset_id"], ctx.url)
        overrides["data.train"] = [str(train_file)]
        if val_file.is_file() and val_file.stat().st_size:  # a dataset too small to split has none
            overrides["data.validation"] = [str(val_file)]
        else:
            overrides.setdefault("data.val_ratio", 0.0)  # do not split it again: the dataset's split is the split
    if spec.get("init_from"):  # warm start: a full model folder, or an adapter over the same base
        overrides["model.init_from"] = str(home_path(spec["init_from"]))
    import yaml

    cfg_path = None
    if raw:
        cfg_path = dsft_home() / "jobs" / ctx.job_id / "config.yaml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cfg = load(cfg_path, overrides)
    if cfg.training.save_every is None:
        cfg.training.save_every = 50  # a job must be able to resume after its worker dies
    resume = checkpoint.latest(run_dir) is not None
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # a previous attempt died before its first checkpoint
    ctx.phase("train", run=relative_to_home(run_dir), resumed=resume, method=cfg.method)
    last = [0.0]

    def progress(step: int, total: int, line: dict) -> None:
        if time.monotonic() - last[0] >= 1.0 or step == total or "eval_loss" in line:
            last[0] = time.monotonic()
            ctx.event("progress", step=step, total=total, **{k: v for k, v in line.items() if k != "step"})

    try:
        result = run_train(cfg, progress, resume=resume, stop=ctx.should_stop, callbacks=[ToolAccuracy()])
    except Interrupted as e:
        ctx.event("checkpoint", step=e.step, path=relative_to_home(e.checkpoint))
        raise Cancelled(str(e)) from None
    out = {"run": relative_to_home(result.dir), "steps": result.steps, "train_loss": result.train_loss,
           "eval_loss": result.eval_loss, "seconds": round(result.seconds, 1),
           "tokens_per_s": round(result.tokens_per_s, 1), "resumed": resume, "dataset_id": spec.get("dataset_id")}
    summary = json.loads((result.dir / "run.json").read_text())
    out.update({k: summary.get(k) for k in ("kept", "augmented", "schedule")})
    ctx.event("metrics", **{k: v for k, v in out.items() if isinstance(v, int | float)})
    if spec.get("register"):
        mv = store.register(store.Registration(spec["register"], result.dir, dataset_id=spec.get("dataset_id"),
                                               job_id=ctx.job_id), ctx.url)
        out["registered"] = f"{mv.name}:{mv.version}"
        ctx.event("registered", ref=out["registered"])
    return out


# ---------------------------------------------------------------- eval

def resolve_model(ref: str, url: str | None = None) -> str:
    """A model for evaluation: NAME@ALIAS / NAME:VERSION from the registry, "tiny", or a folder."""
    if ref in ("tiny", "tiny-deepseek_v3"):
        return str(tiny_model())
    if "@" in ref or ":" in ref:
        with db.session(url) as s:
            return str(home_path(store.resolve(s, ref).artifact))
    return str(home_path(ref))


def evaluate(spec: dict[str, Any], ctx: Context) -> dict[str, Any]:
    from dsft.eval.compare import run_compare

    a, b = resolve_model(spec.get("baseline", "tiny"), ctx.url), resolve_model(spec["model"], ctx.url)
    data = spec.get("data")
    if spec.get("dataset_id"):
        data = [str(dataset_files(spec["dataset_id"], ctx.url)[1])]
    if not data:
        raise UserError("eval needs data", "give spec.dataset_id or spec.data (files inside DSFT_HOME)")
    ctx.phase("eval", baseline=spec.get("baseline", "tiny"), model=spec["model"])
    cmp = run_compare(a, b, [str(home_path(d)) for d in data], limit=spec.get("limit", 100),
                      labels=("baseline", "model"))
    out = cmp.to_dict(keep=5)  # per_metric: exact counts, the first 5 examples of each list
    out["improved"], out["regressed"] = len(cmp.improved), len(cmp.regressed)
    out["regressed_examples"] = cmp.regressed[:5]
    ctx.event("metrics", **{k: v.get("model") for k, v in cmp.metrics.items()})
    return out
