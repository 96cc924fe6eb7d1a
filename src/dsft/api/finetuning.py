"""The guide's REST API (section 8), at its paths under /api/finetuning.

Quick calls answer at once (score-quality, configure, generate-scripts, registry reads); long
ones (create-validation-split, run-pipeline, trigger) queue a job and answer 202 with its id:
follow it at /api/jobs/{id} and /api/jobs/{id}/events.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from dsft.api import resources
from dsft.api.errors import ApiError
from dsft.api.safety import check_paths, home_file
from dsft.errors import UserError
from dsft.home import dsft_home
from dsft.registry import continuous, db, jobs, store

router = APIRouter(prefix="/api/finetuning", tags=["finetuning (the guide's API)"])
MAX_EXAMPLES = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def accepted(job_id: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"job_id": job_id, "status": "queued", "events": f"/api/jobs/{job_id}/events", **extra},
                        status_code=202)


# ---------------------------------------------------------------- phase 1: data

class CollectRequest(Strict):
    components: str | None = Field(None, description="folder of code components (inside DSFT_HOME)")
    style_guides: list[str] = Field(default_factory=list, max_length=100)
    html: list[str] = Field(default_factory=list, max_length=100, description="HTML files or http(s) URLs")


@router.post("/phase1/collect")
def collect(req: CollectRequest) -> dict[str, Any]:
    """Make examples from components, Markdown style guides and HTML pages; saved as an upload."""
    from dsft.data.collect import collect as run

    check_paths(req.components, "components")
    check_paths(req.style_guides, "style_guides")
    check_paths(req.html, "html", urls=True)
    got = run(home_file(req.components, "components") if req.components else None,
              [home_file(p, "style_guides") for p in req.style_guides],
              [h if h.lower().startswith(("http://", "https://")) else str(home_file(h, "html")) for h in req.html],
              timeout=5.0)
    saved = _save_rows("collected.jsonl", got.examples)
    return {"examples": len(got.examples), "problems": got.problems, **saved}


def _save_rows(name: str, rows: list[dict]) -> dict[str, Any]:
    import uuid

    upload_id = uuid.uuid4().hex
    folder = dsft_home() / "uploads" / upload_id
    folder.mkdir(parents=True)
    (folder / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return {"id": upload_id, "path": f"uploads/{upload_id}/{name}"}


class ScoreRequest(Strict):
    examples: list[Any] | None = Field(None, max_length=MAX_EXAMPLES, description="records in any layout")
    path: str | None = Field(None, description="or a file inside DSFT_HOME (e.g. an upload's path)")
    scorer: Literal["dsft", "guide"] = "dsft"


@router.post("/phase1/score-quality")
def score_quality(req: ScoreRequest) -> dict[str, Any]:
    """Validate and score examples: per example its quality (both scorers) and findings."""
    from dsft.data.pipeline import Options, Scanner
    from dsft.data.sources import Record, discover, read_records

    if (req.examples is None) == (req.path is None):
        raise ApiError(422, "invalid_request", "give exactly one of examples and path")
    if req.path is not None:
        check_paths(req.path, "path")
        records = read_records(discover([home_file(req.path, "path")]))
    else:
        records = (Record("<request>", k + 1, "", ex) for k, ex in enumerate(req.examples))
    out, scanner = [], Scanner(Options(scorer=req.scorer))
    for row in scanner.scan(records):
        out.append({"line": row.record.line, "layout": row.layout, "valid": not row.rejected,
                    "quality": row.scores.get(req.scorer) if not row.rejected else 0, "scores": row.scores,
                    "duplicate_of": row.duplicate_of,
                    "findings": [{"code": f.code, "severity": f.severity, "message": f.message} for f in row.findings]})
        if len(out) > MAX_EXAMPLES:
            raise ApiError(413, "too_large", f"more than {MAX_EXAMPLES} examples", "use create-validation-split (a job)")
    scores = [e["quality"] for e in out if e["valid"]]
    return {"scorer": req.scorer, "count": len(out), "valid": len(scores),
            "mean_quality": sum(scores) / len(scores) if scores else None, "examples": out}


class GenerateRequest(Strict):
    n: int = Field(100, ge=1, le=MAX_EXAMPLES)
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    tools: list[dict[str, Any]] | None = Field(None, max_length=200, description="OpenAI tool specs; default LightDom")
    scenarios: str | None = Field(None, description="scenario YAML file inside DSFT_HOME; default the built-in one")
    error_ratio: float = Field(0.15, ge=0, le=1)
    ood_ratio: float = Field(0.1, ge=0, le=1)
    return_examples: bool = Field(False, description="also return the examples in the response")
    hold_out: float = Field(0, ge=0, lt=1, description="share of paraphrases and slot values kept out of the "
                            "training examples and used only for held-out test files (0 = none)")
    held_out_n: int = Field(100, ge=1, le=MAX_EXAMPLES, description="examples in each held-out test file")


@router.post("/phase1/generate-tool-examples")
def generate_tool_examples(req: GenerateRequest) -> dict[str, Any]:
    from dsft.data.generate import generate, hold_out, load_scenarios
    from dsft.data.layouts import tools_from

    check_paths(req.scenarios, "scenarios")
    tools = None
    if req.tools is not None:
        problems: list[str] = []
        tools = tools_from(req.tools, None, lambda code, msg: problems.append(msg))
        if problems or not tools:
            raise ApiError(400, "invalid_tools", problems[0] if problems else "no tools", "give OpenAI function specs")
    spec = load_scenarios(home_file(req.scenarios, "scenarios") if req.scenarios else None)
    options = {"tools": tools, "error_ratio": req.error_ratio, "ood_ratio": req.ood_ratio}
    held = hold_out(spec, req.hold_out, req.seed) if req.hold_out else None
    examples = generate(held.train if held else spec, req.n, seed=req.seed, **options)
    saved = _save_rows("generated.jsonl", examples)
    out = {"count": len(examples), **saved, **({"examples": examples} if req.return_examples else {})}
    if held:
        # Seeds of their own: the test rows are drawn independently of the training rows.
        for key, side in (("new_values", held.new_values), ("new_phrasings", held.new_phrasings)):
            rows = generate(side, req.held_out_n, seed=req.seed + 1_000_003 + len(key), **options)
            out[key] = {"count": len(rows), **_save_rows(f"held-out-{key.replace('_', '-')}.jsonl", rows)}
        out["held_out"] = held.what
    return out


class SplitRequest(Strict):
    inputs: list[str] = Field(min_length=1, max_length=1000, description="files inside DSFT_HOME (upload paths)")
    val_ratio: float = Field(0.1, ge=0, lt=1)
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    tools: str | None = None
    format: Literal["chat", "sharegpt", "instruction", "completion", "text"] | None = None
    min_quality: float | None = Field(None, ge=0, le=100)
    near_dup: float | None = Field(None, gt=0, le=1)


@router.post("/phase1/create-validation-split", status_code=202)
def create_validation_split(req: SplitRequest) -> JSONResponse:
    """Prepare a dataset (validate, score, deduplicate, split) as a job; its result holds the dataset id."""
    spec = req.model_dump(exclude_none=True)
    check_paths(spec)
    for p in req.inputs:
        if not home_file(p, "inputs").exists():
            raise ApiError(404, "not_found", f"inputs: {p} does not exist", "upload it first (POST /api/datasets)")
    return accepted(jobs.submit("prepare", spec))


# ---------------------------------------------------------------- phase 2: training setup

class ConfigureRequest(Strict):
    config: dict[str, Any] = Field(description="a training config: dsft's layout or the guide's (section 3.2)")
    seq_len: int | None = Field(None, gt=0, le=131072, description="for the memory estimate; default data.max_length")


def _configs_dir() -> Path:
    return dsft_home() / "configs"


@router.post("/phase2/configure")
def configure(req: ConfigureRequest) -> dict[str, Any]:
    """Validate a config, apply presets, store the resolved copy and estimate its memory."""
    from dsft.registry.tasks import base_model
    from dsft.train.config import from_guide, resolve
    from dsft.train.estimate import estimate

    raw = dict(req.config)
    check_paths(raw, "config")
    try:
        raw = from_guide(raw) if "baseModel" in raw else raw
    except (AttributeError, TypeError) as e:
        raise ApiError(422, "invalid_config", f"the guide-layout config is malformed: {e}") from None
    raw.setdefault("output", {"dir": "runs/(set by the job)"})
    model = (raw.get("model") or {}).get("name_or_path") if isinstance(raw.get("model"), dict) else None
    if not isinstance(model, str) or not model:
        raise ApiError(422, "invalid_request", "config.model.name_or_path is required", "e.g. tiny, or a hub id")
    raw["model"] = {**raw["model"], "name_or_path": base_model(model)}
    try:
        cfg = resolve(raw)
    except UserError as e:
        raise ApiError(422, "invalid_config", e.message, e.fix) from None
    resolved = cfg.model_dump(mode="json")
    config_id = hashlib.sha256(orjson.dumps(resolved, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    folder = _configs_dir() / config_id
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save(folder / "config.yaml")
    try:
        est = estimate(cfg.model.name_or_path, "full" if cfg.method == "full" else cfg.method,
                       seq_len=req.seq_len or cfg.data.max_length, batch=cfg.training.batch_size, rank=cfg.lora.r,
                       checkpointing=cfg.training.gradient_checkpointing)
    except (OverflowError, ValueError) as e:  # absurd sizes: a request error, not a server one
        raise ApiError(422, "invalid_config", f"cannot estimate memory for this config: {e}",
                       "use realistic batch_size, max_length and lora.r") from None
    return {"config_id": config_id, "config": resolved,
            "memory": {"total_gb": round(est.total / 2**30, 3), "params": est.params, "trainable": est.trainable,
                       "rows_gb": {k: round(v / 2**30, 3) for k, v in est.rows.items()}, "notes": est.notes}}


class ScriptsRequest(Strict):
    config_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="from phase2/configure")


def _config_folder(config_id: str) -> Path:
    folder = _configs_dir() / config_id
    if not (folder / "config.yaml").exists():
        raise ApiError(404, "not_found", f"no configuration {config_id}", "POST phase2/configure first")
    return folder


@router.post("/phase2/generate-scripts")
def generate_scripts(req: ScriptsRequest) -> dict[str, Any]:
    """A standalone training script (transformers + peft) and its pinned requirements for a stored config."""
    from dsft.train.export_script import export

    folder = _config_folder(req.config_id)
    files = export(folder, folder / "script")
    return {"config_id": req.config_id, "files": [f.name for f in files],
            "training_script": f"/api/finetuning/phase2/training-script?config_id={req.config_id}",
            "requirements": f"/api/finetuning/phase2/requirements?config_id={req.config_id}"}


def _script_file(config_id: str, name: str) -> str:
    if len(config_id) != 16 or not all(c in "0123456789abcdef" for c in config_id):
        raise ApiError(422, "invalid_request", "config_id must be 16 hex characters", "use the id configure returned")
    path = _config_folder(config_id) / "script" / name
    if not path.exists():
        raise ApiError(404, "not_found", f"no scripts for {config_id} yet", "POST phase2/generate-scripts first")
    return path.read_text(encoding="utf-8")


@router.get("/phase2/training-script", response_class=PlainTextResponse)
def training_script(config_id: str = Query(..., min_length=16, max_length=16)) -> str:
    return _script_file(config_id, "train.py")


@router.get("/phase2/requirements", response_class=PlainTextResponse)
def requirements(config_id: str | None = Query(None, min_length=16, max_length=16)) -> str:
    """Pinned requirements for a generated script, or dsft's own runtime pins without config_id."""
    if config_id:
        return _script_file(config_id, "requirements.txt")
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for name in ("torch", "transformers", "tokenizers", "peft", "accelerate", "bitsandbytes", "safetensors"):
        try:
            lines.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- phase 3: registry

class RegisterRequest(Strict):
    name: str = Field(min_length=1, max_length=128)
    job_id: str | None = Field(None, description="a finished train job whose run to register")
    run: str | None = Field(None, description="or a run folder inside DSFT_HOME")
    dataset_id: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    description: str = Field("", max_length=2000)
    alias: str | None = Field(None, description="also point this alias at the new version")


@router.post("/phase3/register-model", status_code=201)
def register_model(req: RegisterRequest) -> dict[str, Any]:
    if (req.job_id is None) == (req.run is None):
        raise ApiError(422, "invalid_request", "give exactly one of job_id and run")
    check_paths(req.run, "run")
    dataset_id = req.dataset_id
    if req.job_id:
        job = jobs.get(req.job_id)
        run = (job.result or {}).get("run") or ((job.result or {}).get("train") or {}).get("run")
        if job.status != "succeeded" or not run:
            raise ApiError(400, "job_not_trained", f"job {req.job_id} is {job.status} and has no finished run",
                           "register after a train or pipeline job succeeds")
        dataset_id = dataset_id or (job.result or {}).get("dataset_id") or job.spec.get("dataset_id")
    else:
        run = req.run
    mv = store.register(store.Registration(req.name, home_file(run, "run"), dataset_id=dataset_id, metrics=req.metrics,
                                           job_id=req.job_id, description=req.description))
    if req.alias:
        store.set_alias(mv.name, req.alias, mv.version, "register-model")
    return store.version_dict(mv, [req.alias] if req.alias else [])


router.add_api_route("/phase3/models", resources.models, methods=["GET"], summary="Models")  # = GET /api/models


@router.get("/phase3/versions/{model_name}")
def model_versions(model_name: str) -> dict[str, Any]:
    with db.session() as s:
        return {"name": model_name, "versions": store.versions(s, model_name), "alias_log": store.alias_log(s, model_name)}


# ---------------------------------------------------------------- continuous training

class AddExampleRequest(Strict):
    example: Any | None = Field(None, description="one record, any layout")
    examples: list[Any] | None = Field(None, max_length=MAX_EXAMPLES)


@router.post("/continuous/add-example")
def add_example(req: AddExampleRequest) -> dict[str, Any]:
    """Validate each example on arrival (issue 2's codes); rejected ones are kept with their reasons."""
    batch = ([req.example] if req.example is not None else []) + list(req.examples or [])
    if not batch:
        raise ApiError(422, "invalid_request", "give example or examples")
    return continuous.add_examples(batch)


@router.get("/continuous/status")
def continuous_status() -> dict[str, Any]:
    return continuous.status()


@router.post("/continuous/trigger", status_code=202)
def trigger() -> JSONResponse:
    job_id = continuous.maybe_retrain("trigger")
    if job_id is None:
        raise ApiError(409, "already_running", "a retrain is already queued or running",
                       "follow it in continuous/status")
    return accepted(job_id)


@router.get("/continuous/config")
def get_policy() -> dict[str, Any]:
    return continuous.policy().model_dump()


@router.put("/continuous/config")
def put_policy(policy: continuous.Policy) -> dict[str, Any]:
    check_paths(policy.model_dump(), "policy")
    return continuous.set_policy(policy).model_dump()


# ---------------------------------------------------------------- the whole pipeline

class PipelineRequest(Strict):
    generate: dict[str, int] | None = Field(None, description="{n, seed}: the built-in LightDom generator")
    inputs: list[str] = Field(default_factory=list, max_length=1000, description="files inside DSFT_HOME")
    collect: CollectRequest | None = Field(None, description="components / style guides / HTML to collect from")
    tools: str | None = None
    prepare: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict, description="{model, config, overrides}")
    eval: dict[str, Any] | Literal[False] = Field(default_factory=dict, description="{limit}; false skips")
    register_as: dict[str, str] | None = Field(None, alias="register", description="{name, alias}")


@router.post("/run-pipeline", status_code=202)
def run_pipeline(req: PipelineRequest) -> JSONResponse:
    spec = req.model_dump(exclude_none=True, by_alias=True)
    check_paths({k: v for k, v in spec.items() if k != "collect"})
    if req.collect:
        check_paths(req.collect.components, "collect.components")
        check_paths(req.collect.style_guides, "collect.style_guides")
        check_paths(req.collect.html, "collect.html", urls=True)
    if not req.generate and not req.inputs and not req.collect:
        raise ApiError(422, "invalid_request", "the pipeline has no data", "give generate: {n: 400} or inputs")
    if req.register_as:
        store.check_name(req.register_as.get("name", ""))
    return accepted(jobs.submit("pipeline", spec))
