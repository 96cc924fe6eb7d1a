"""The guide's phase 3 A/B-test and phase 4 deployment endpoints. They write the registry; the
`dsft serve` gateways follow it (see dsft.serve.app)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dsft.registry import abtest, rollout

router = APIRouter(prefix="/api/finetuning", tags=["finetuning (the guide's API)"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantSpec(Strict):
    name: str | None = Field(None, max_length=64)
    version: int | None = Field(None, ge=1, le=2**31 - 1)
    ref: str | None = Field(None, max_length=200)
    weight: float = Field(1.0, gt=0, le=1e6)


class AbTestRequest(Strict):
    model: str = Field(min_length=1, max_length=128, description="the model name clients request")
    variants: list[VariantSpec] = Field(min_length=2, max_length=10)
    metric: Literal["outcome_rate", "rating", "latency"] = "outcome_rate"
    min_samples: int = Field(100, ge=1, le=10_000_000)
    alpha: float = Field(0.05, gt=0, lt=1)
    auto_promote: bool = False
    alias: str = Field("champion", max_length=64)


@router.post("/phase3/ab-test", status_code=201)
def create_ab_test(req: AbTestRequest) -> dict[str, Any]:
    test = abtest.create(req.model, [v.model_dump(exclude_none=True) for v in req.variants], req.metric,
                         req.min_samples, req.alpha, req.auto_promote, req.alias)
    return abtest.results(test.id, promote=False)


@router.get("/phase3/ab-test")
def list_ab_tests() -> dict[str, Any]:
    return {"running": [{"id": t.id, "model": t.model, "variants": t.variants} for t in abtest.running()]}


@router.get("/phase3/ab-test/{test_id}")
def ab_test_results(test_id: str) -> dict[str, Any]:
    """Per-variant counts and rates with 95% intervals, the test, P(best), and a recommendation;
    a significant winner ends the test (and moves the alias with auto_promote)."""
    return abtest.results(test_id)


class OutcomeRequest(Strict):
    user: str | None = Field(None, max_length=256, description="the `user` the request was made with")
    variant: str | None = Field(None, max_length=64)
    success: bool | None = None
    rating: float | None = Field(None, ge=-1e6, le=1e6)


@router.post("/phase3/ab-test/{test_id}/outcome")
def ab_outcome(test_id: str, req: OutcomeRequest) -> dict[str, Any]:
    variant = abtest.outcome(test_id, req.user, req.variant, req.success, req.rating)
    return {"test_id": test_id, "variant": variant}


@router.post("/phase3/ab-test/{test_id}/stop")
def ab_stop(test_id: str) -> dict[str, Any]:
    abtest.stop(test_id)
    return abtest.results(test_id, promote=False)


class DeployRequest(Strict):
    model: str = Field(min_length=1, max_length=200, description="NAME@ALIAS or NAME:VERSION")
    target: str = Field("prod", max_length=64, description="the `dsft serve --name` that should answer with it")
    canary_percent: float | None = Field(None, gt=0, le=100)


@router.post("/phase4/deploy", status_code=202)
def deploy(req: DeployRequest, request: Request) -> JSONResponse:
    dep = rollout.deploy(req.model, req.target, req.canary_percent,
                         {"via": "api", "client": request.client.host if request.client else None})
    return JSONResponse(rollout.get(dep.id), status_code=202)


@router.get("/phase4/deployments")
def deployments(target: str | None = None) -> dict[str, Any]:
    return {"deployments": rollout.listing(target)}


@router.get("/phase4/deployments/{deployment_id}")
def deployment(deployment_id: int = Path(ge=1, le=2**31 - 1)) -> dict[str, Any]:
    return rollout.get(deployment_id)


@router.post("/phase4/rollback/{deployment_id}", status_code=202)
def rollback(request: Request, deployment_id: int = Path(ge=1, le=2**31 - 1)) -> JSONResponse:
    back = rollout.rollback(deployment_id, {"via": "api", "client": request.client.host if request.client else None})
    return JSONResponse(rollout.get(back.id), status_code=202)
