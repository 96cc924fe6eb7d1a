"""Deployments: which registered version a serving target (`dsft serve --name TARGET`) answers with.

The registry is the control plane and `dsft serve` the data plane: a deploy request writes a
`pending` deployment; the serving process sees it, loads the version beside the live one, checks
readiness (a one-token generation), and only then moves traffic (an atomic swap of its route).
A version that fails readiness never takes traffic: the deployment is marked `failed` with an
automatic-rollback event and the previous one stays live. A manual rollback writes a new
deployment of the previous version, so the history only grows. Every change is an event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dsft.errors import UserError
from dsft.registry import db, store
from dsft.registry.schema import Deployment, DeploymentEvent, now


def deploy(ref: str, target: str = "prod", canary: float | None = None, requested_by: dict | None = None,
           url: str | None = None) -> Deployment:
    store.check_name(target, "deployment target")
    if canary is not None and not 0 < canary <= 100:
        raise UserError(f"--canary {canary} is outside (0, 100]", "give the share of traffic, e.g. --canary 10")
    with db.session(url) as s:
        mv = store.resolve(s, ref)
        live = current(s, target)
        if canary is not None and canary < 100 and live is None:
            raise UserError(f"{target} has no live deployment to share traffic with", "deploy without --canary first")
        dep = Deployment(target=target, model=mv.name, version=mv.version, canary_percent=canary or 100.0,
                         previous_id=live.id if live else None, status="pending", requested_by=requested_by or {})
        s.add(dep)
        s.flush()
        s.add(DeploymentEvent(deployment_id=dep.id, kind="requested", data={
            "ref": f"{mv.name}:{mv.version}", "canary_percent": dep.canary_percent, **(requested_by or {})}))
    return dep


def current(s, target: str) -> Deployment | None:
    return s.scalars(select(Deployment).where(Deployment.target == target, Deployment.status == "live")
                     .order_by(Deployment.id.desc()).limit(1)).first()


def pending(target: str, url: str | None = None) -> Deployment | None:
    with db.session(url) as s:
        return s.scalars(select(Deployment).where(Deployment.target == target, Deployment.status == "pending")
                         .order_by(Deployment.id).limit(1)).first()


def event(dep_id: int, kind: str, data: dict[str, Any], url: str | None = None) -> None:
    with db.session(url) as s:
        s.add(DeploymentEvent(deployment_id=dep_id, kind=kind, data=data))


def mark_live(dep_id: int, health: dict[str, Any], url: str | None = None) -> None:
    with db.session(url) as s:
        dep = s.get(Deployment, dep_id, with_for_update=True)
        for old in s.scalars(select(Deployment).where(Deployment.target == dep.target, Deployment.status == "live",
                                                      Deployment.id != dep.id)):
            old.status, old.updated = "superseded", now()
            s.add(DeploymentEvent(deployment_id=old.id, kind="superseded", data={"by": dep.id}))
        dep.status, dep.health, dep.updated = "live", health, now()
        s.add(DeploymentEvent(deployment_id=dep.id, kind="live", data=health))


def mark_failed(dep_id: int, why: str, url: str | None = None) -> None:
    with db.session(url) as s:
        dep = s.get(Deployment, dep_id, with_for_update=True)
        dep.status, dep.health, dep.updated = "failed", {"ready": False, "error": why}, now()
        s.add(DeploymentEvent(deployment_id=dep.id, kind="failed", data={"error": why}))
        s.add(DeploymentEvent(deployment_id=dep.id, kind="rolled_back",
                              data={"automatic": True, "live": dep.previous_id,
                                    "why": "the new version failed its readiness check; traffic never moved"}))


def rollback(dep_id: int, requested_by: dict | None = None, url: str | None = None) -> Deployment:
    """Return the deployment's target to what was live before it: a new deployment of that version."""
    with db.session(url) as s:
        dep = s.get(Deployment, dep_id, with_for_update=True)
        if dep is None:
            raise UserError(f"no deployment {dep_id}", "see GET /api/finetuning/phase4/deployments", exit_code=1)
        if dep.status != "live":
            raise UserError(f"deployment {dep_id} is {dep.status}, not live: nothing to roll back",
                            "roll back the live deployment of its target")
        prev = s.get(Deployment, dep.previous_id) if dep.previous_id else None
        if prev is None:
            raise UserError(f"deployment {dep_id} has no previous deployment to return to",
                            "deploy another version instead")
        back = Deployment(target=dep.target, model=prev.model, version=prev.version, canary_percent=100.0,
                          previous_id=dep.id, status="pending",
                          requested_by={"rollback_of": dep.id, **(requested_by or {})})
        s.add(back)
        s.flush()
        dep.status, dep.updated = "rolled_back", now()
        s.add(DeploymentEvent(deployment_id=dep.id, kind="rolled_back", data={"automatic": False, "by": back.id}))
        s.add(DeploymentEvent(deployment_id=back.id, kind="requested", data={
            "ref": f"{prev.model}:{prev.version}", "rollback_of": dep.id}))
    return back


def listing(target: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    with db.session(url) as s:
        q = select(Deployment).order_by(Deployment.id.desc()).limit(200)
        if target:
            q = q.where(Deployment.target == target)
        out = []
        for d in s.scalars(q):
            events = s.scalars(select(DeploymentEvent).where(DeploymentEvent.deployment_id == d.id)
                               .order_by(DeploymentEvent.id)).all()
            out.append(deployment_dict(d, events))
        return out


def deployment_dict(d: Deployment, events: list[DeploymentEvent] | None = None) -> dict[str, Any]:
    out = {"id": d.id, "target": d.target, "ref": f"{d.model}:{d.version}", "canary_percent": d.canary_percent,
           "previous_id": d.previous_id, "status": d.status, "health": d.health, "requested_by": d.requested_by,
           "created": d.created.isoformat(), "updated": d.updated.isoformat()}
    if events is not None:
        out["events"] = [{"kind": e.kind, "data": e.data, "at": e.created.isoformat()} for e in events]
    return out


def get(dep_id: int, url: str | None = None) -> dict[str, Any]:
    with db.session(url) as s:
        d = s.get(Deployment, dep_id)
        if d is None:
            raise UserError(f"no deployment {dep_id}", "see the deployments list", exit_code=1)
        events = s.scalars(select(DeploymentEvent).where(DeploymentEvent.deployment_id == d.id)
                           .order_by(DeploymentEvent.id)).all()
        return deployment_dict(d, events)
