"""The full pipeline as one job: generate/collect -> prepare -> train -> eval -> register [-> alias].

    {"generate": {"n": 400, "seed": 0},        # the built-in LightDom scenarios (or "inputs": [...])
     "collect": {"components": "uploads/<id>/src", "style_guides": [...], "html": [...]},   # optional
     "prepare": {"val_ratio": 0.1, "seed": 0},
     "train": {"model": "tiny", "overrides": {"training.epochs": 8}},
     "eval": {"limit": 60},                   # base vs trained on the held-out split; false = skip
     "register": {"name": "lightdom", "alias": "champion"}}

Each phase is a `phase` event on the job, with its result; the job's result holds them all.
"""

from __future__ import annotations

from typing import Any

import orjson

from dsft.errors import UserError
from dsft.home import dsft_home, relative_to_home
from dsft.registry import store, tasks


def run(spec: dict[str, Any], ctx: tasks.Context) -> dict[str, Any]:
    from dsft.data.generate import builtin, generate, load_scenarios

    work = dsft_home() / "jobs" / ctx.job_id  # inputs the job made; the run folder is runs/<job id>
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    inputs = list(spec.get("inputs") or [])
    tools = spec.get("tools")
    if spec.get("collect"):
        from dsft.data.collect import collect

        c = spec["collect"]
        ctx.phase("collect", **{k: v for k, v in c.items() if k in ("components", "style_guides", "html")})
        got = collect(tasks.home_path(c["components"]) if c.get("components") else None,
                      [tasks.home_path(p) for p in c.get("style_guides") or []],
                      [h if h.startswith(("http://", "https://")) else str(tasks.home_path(h))
                       for h in c.get("html") or []])
        if not got.examples:
            raise UserError("collect found no examples: " + "; ".join(got.problems[:3]),
                            "check the collect sources (style guides need ## sections with text)")
        path = work / "collected.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in got.examples))
        inputs.append(relative_to_home(path))
        out["collect"] = {"examples": len(got.examples), "problems": got.problems, "file": relative_to_home(path)}
    if spec.get("generate"):
        g = spec["generate"]
        ctx.phase("generate", n=g.get("n", 400))
        examples = generate(load_scenarios(), int(g.get("n", 400)), seed=int(g.get("seed", 0)))
        path = work / "generated.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in examples))
        inputs.append(relative_to_home(path))
        tools = tools or str(builtin("lightdom_tools.json"))
        out["generate"] = {"examples": len(examples), "file": relative_to_home(path)}
    if not inputs:
        raise UserError("the pipeline has no data", "give generate: {n: ...}, collect: {...} or inputs: [files]")
    prep = tasks.prepare({**(spec.get("prepare") or {}), "inputs": inputs, "tools": tools}, ctx)
    out["prepare"] = prep
    train_spec = dict(spec.get("train") or {})
    overrides = dict(train_spec.get("overrides") or {})
    overrides.setdefault("model.name_or_path", train_spec.get("model", "tiny"))
    trained = tasks.train({"config": train_spec.get("config") or {}, "overrides": overrides,
                           "dataset_id": prep["dataset_id"]}, ctx)
    out["train"] = trained
    metrics: dict[str, Any] = {"eval_loss": trained["eval_loss"], "train_loss": trained["train_loss"]}
    ev = spec.get("eval", {})
    if ev is not False:
        compared = tasks.evaluate({"baseline": overrides["model.name_or_path"], "model": trained["run"],
                                   "dataset_id": prep["dataset_id"], "limit": (ev or {}).get("limit", 60)}, ctx)
        out["eval"] = {k: {"base": v.get("baseline"), "trained": v.get("model"), "delta": v.get("delta")}
                       for k, v in compared["metrics"].items()}
        out["eval"]["improved"], out["eval"]["regressed"] = compared["improved"], compared["regressed"]
        out["eval"]["per_metric"] = {k: {"n": v["n"], "improved": v["n_improved"], "regressed": v["n_regressed"]}
                                     for k, v in compared.get("per_metric", {}).items()}
        metrics.update({k: v.get("model") for k, v in compared["metrics"].items()})
        metrics["base"] = {k: v.get("baseline") for k, v in compared["metrics"].items()}
    reg = spec.get("register")
    if reg:
        ctx.phase("register", name=reg["name"])
        mv = store.register(store.Registration(reg["name"], tasks.home_path(trained["run"]),
                                               dataset_id=prep["dataset_id"], metrics=metrics, job_id=ctx.job_id,
                                               description="run-pipeline"), ctx.url)
        out["register"] = {"ref": f"{mv.name}:{mv.version}", "artifact_sha256": mv.artifact_sha256}
        if reg.get("alias"):
            store.set_alias(mv.name, reg["alias"], mv.version, f"run-pipeline job {ctx.job_id}", ctx.url)
            out["register"]["alias"] = reg["alias"]
    return out
