"""Resource endpoints users expect beside the guide's: uploads and datasets, jobs (with a
server-sent-event stream of their events), models and aliases."""

from __future__ import annotations

import time
from typing import Any, Literal

import orjson
from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dsft.api.errors import ApiError
from dsft.api.safety import check_paths, save_upload
from dsft.registry import db, jobs, store
from dsft.registry.schema import Dataset

router = APIRouter(prefix="/api", tags=["resources"])


@router.post("/datasets", status_code=201)
async def upload(file: UploadFile = File(...)) -> dict[str, Any]:
    """Upload a data file (JSONL, JSON, CSV, Parquet, Markdown, HTML) or safetensors weights; pickles are refused.
    The answer's `path` is how later requests name the file."""
    return await save_upload(file)


@router.get("/datasets")
def datasets(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    with db.session() as s:
        rows = s.scalars(select(Dataset).order_by(Dataset.created.desc()).limit(limit)).all()
        return {"datasets": [store.dataset_dict(d) for d in rows]}


@router.get("/datasets/{dataset_id}")
def dataset(dataset_id: str) -> dict[str, Any]:
    with db.session() as s:
        ds = s.get(Dataset, dataset_id)
        if ds is None:
            raise ApiError(404, "not_found", f"no dataset {dataset_id}")
        return {**store.dataset_dict(ds), "report": ds.report}


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["prepare", "train", "eval", "pipeline", "retrain"]
    spec: dict[str, Any] = Field(default_factory=dict)


@router.post("/jobs", status_code=202)
def submit(req: JobRequest) -> JSONResponse:
    check_paths(req.spec, "spec")
    job_id = jobs.submit(req.kind, req.spec)
    return JSONResponse({"job_id": job_id, "status": "queued", "events": f"/api/jobs/{job_id}/events"},
                        status_code=202)


@router.get("/jobs")
def job_list(status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
             kind: Literal["prepare", "train", "eval", "pipeline", "retrain"] | None = None,
             limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    return {"jobs": [jobs.job_dict(j) for j in jobs.listing(status, kind, limit)]}


@router.get("/jobs/{job_id}")
def job(job_id: str) -> dict[str, Any]:
    return jobs.job_dict(jobs.get(job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str) -> dict[str, Any]:
    before = jobs.cancel(job_id)
    return {"job_id": job_id, "was": before, "job": jobs.job_dict(jobs.get(job_id))}


@router.get("/jobs/{job_id}/events", response_model=None)
def events(job_id: str, after: int = Query(0, ge=0, le=2**62), follow: bool = False) -> Any:
    """The job's events in order. `follow=true` streams them as server-sent events until the job ends."""
    jobs.get(job_id)  # 404 for an unknown job
    if not follow:
        return {"events": [jobs.event_dict(e) for e in jobs.events(job_id, after)]}

    def stream():
        last = after
        while True:
            batch = jobs.events(job_id, last)
            for e in batch:
                last = e.id
                yield f"id: {e.id}\nevent: {e.kind}\ndata: {orjson.dumps(jobs.event_dict(e)).decode()}\n\n"
            if jobs.get(job_id).status in jobs.DONE and not batch:
                yield "event: end\ndata: {}\n\n"
                return
            if not batch:
                yield ": keep-alive\n\n"
                time.sleep(0.5)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/models")
def models() -> dict[str, Any]:
    with db.session() as s:
        return {"models": store.list_models(s)}


@router.get("/models/{ref}")
def model(ref: str) -> dict[str, Any]:
    """NAME@ALIAS, NAME:VERSION or NAME (newest)."""
    with db.session() as s:
        mv = store.resolve(s, ref)
        return {**store.version_dict(mv, store.aliases_of(s, mv.name).get(mv.version)), "config": mv.config}


@router.get("/models/{a}/diff/{b}")
def diff(a: str, b: str) -> dict[str, Any]:
    with db.session() as s:
        va, vb = store.resolve(s, a), store.resolve(s, b)
        ds = {d.id: d for d in s.scalars(select(Dataset).where(Dataset.id.in_([va.dataset_id, vb.dataset_id])))}
        return store.diff(va, vb, ds)


class AliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(description="the version to point at; null deletes the alias", ge=1, le=2**31 - 1)
    reason: str = Field("", max_length=2000)


@router.put("/models/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, req: AliasRequest) -> dict[str, Any]:
    ev = store.set_alias(name, alias, req.version, req.reason or "api")
    return {"name": name, "alias": alias, "from": ev.old_version, "to": ev.new_version}
