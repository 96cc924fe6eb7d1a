"""`dsft api`, `dsft worker`, `dsft jobs`, `dsft models` and `dsft pipeline`: the platform's CLI."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsft.errors import UserError

console = Console()
err_console = Console(stderr=True)
models_app = typer.Typer(help="Registered model versions and their aliases.", no_args_is_help=True)
jobs_app = typer.Typer(help="The job queue.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The whole pipeline as one job.", no_args_is_help=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8000, "--port"),
        worker: bool = typer.Option(True, "--worker/--no-worker", help="Run jobs in this process too."),
        concurrency: int = typer.Option(1, "--concurrency", min=1, help="Jobs the embedded worker runs at once.")) -> None:
    """Serve the REST API (OpenAPI at /docs)."""
    import uvicorn

    from dsft.api.app import create_app
    from dsft.api.safety import api_key

    if api_key() is None:
        if not _loopback(host):
            raise UserError(f"refusing to listen on {host} without an API key",
                            "set DSFT_API_KEY (clients send Authorization: Bearer <key>), or use --host 127.0.0.1")
        console.print("[yellow]DSFT_API_KEY is not set: listening on loopback only, without authentication[/]")

    def ready() -> None:
        from dsft.home import dsft_home
        from dsft.registry import db

        console.print(f"dsft api on {_url(host, port)} (docs {_url(host, port)}/docs): {_key_said()}; home "
                      f"{dsft_home()}, database {db.engine().url.render_as_string()}"
                      + (f"; running jobs here, {concurrency} at a time" if worker else "; jobs need `dsft worker`"),
                      highlight=False, soft_wrap=True)

    uvicorn.run(create_app(worker=worker, concurrency=concurrency, on_ready=ready), host=host, port=port,
                log_level="warning")


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _key_said() -> str:
    from dsft.api.safety import api_key

    return "API key required (DSFT_API_KEY; clients send Authorization: Bearer <key>)" if api_key() \
        else "no API key (loopback only)"


def worker(concurrency: int = typer.Option(1, "--concurrency", min=1, help="Jobs run at once."),
           poll: float = typer.Option(0.5, "--poll", min=0.05, help="Seconds between queue checks."),
           max_jobs: int = typer.Option(None, "--max-jobs", help="Exit after this many jobs.")) -> None:
    """Claim queued jobs and run each in a child process (several workers may share one database)."""
    import signal
    import threading

    from dsft.registry import db
    from dsft.registry.worker import Worker

    db.engine()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    w = Worker(concurrency=concurrency, poll=poll)
    console.print(f"worker {w.name}: {concurrency} at a time, database {db.engine().url.render_as_string()}")
    try:
        w.run(stop, max_jobs)
    except KeyboardInterrupt:
        stop.set()


@jobs_app.command("list")
def jobs_list(status: str = typer.Option(None, "--status"), limit: int = typer.Option(20, "--limit")) -> None:
    from dsft.registry import jobs

    table = Table("id", "kind", "status", "attempt", "created", "error")
    for j in jobs.listing(status, None, limit):
        table.add_row(j.id[:jobs.SHORT_ID], j.kind, j.status, str(j.attempt), j.created.strftime("%Y-%m-%d %H:%M:%S"),
                      escape((j.error or "")[:60]))
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str = typer.Argument(..., help="The id, or a unique prefix (as `jobs list` shows)."),
              events: bool = typer.Option(True, "--events/--no-events")) -> None:
    from dsft.registry import jobs

    job_id = jobs.full_id(job_id)
    console.print_json(json.dumps(jobs.job_dict(jobs.get(job_id))))
    if events:
        for e in jobs.events(job_id):
            console.print(f"{e.created:%H:%M:%S} {e.kind:10s} {escape(json.dumps(e.data))}", highlight=False)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str = typer.Argument(..., help="The id, or a unique prefix.")) -> None:
    from dsft.registry import jobs

    job_id = jobs.full_id(job_id)
    console.print(f"{job_id}: was {jobs.cancel(job_id)}")


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    from dsft.registry import db, store

    with db.session() as s:
        rows = store.list_models(s)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "latest", "versions", "aliases")
    for r in rows:
        table.add_row(r["name"], str(r["latest"]), str(r["versions"]),
                      ", ".join(f"{a}->{v}" for a, v in sorted(r["aliases"].items())))
    console.print(table)


@models_app.command("register")
def models_register(run: Path = typer.Argument(..., help="A finished run folder (`dsft train --out`), anywhere."),
                    name: str = typer.Option(..., "--name", help="The model name; versions number up per name."),
                    alias: str = typer.Option(None, "--alias", help="Also point this alias at the new version."),
                    link: bool = typer.Option(False, "--link", help="Link the run into DSFT_HOME instead of copying "
                                              "it (the run must then stay where it is)."),
                    dataset: str = typer.Option(None, "--dataset", help="Dataset id for the lineage (default: the "
                                                "prepared dataset the run trained on, if any)."),
                    description: str = typer.Option("", "--description")) -> None:
    """Register a run as a model version (copied into DSFT_HOME with its lineage), ready for `dsft deploy`."""
    mv = _register(run, name, alias, link, dataset, description)
    console.print(f"registered {mv.name}:{mv.version} ({mv.kind}, base {mv.base_model}, dataset "
                  f"{(mv.dataset_id or 'not recorded')[:12]}) at {mv.artifact}" + (f"; {mv.name}@{alias} points at it"
                                                                             if alias else ""), highlight=False)
    console.print(f"deploy it with `dsft deploy {mv.name}:{mv.version} --as prod`", highlight=False)


def _register(run: Path, name: str, alias: str | None = None, link: bool = False, dataset: str | None = None,
              description: str = ""):
    from dsft.registry import db, store

    if alias:  # checked before anything is copied (import_run checks the name)
        store.check_name(alias, "alias")
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist", "give the --out of a finished `dsft train` run")
    folder = store.import_run(run, name, link)
    with db.session() as s:
        dataset = dataset or store.dataset_of_run(s, run.resolve())
    mv = store.register(store.Registration(name, folder, dataset_id=dataset, description=description))
    if alias:
        store.set_alias(mv.name, alias, mv.version, f"registered from {run}")
    return mv


@models_app.command("show")
def models_show(ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS"),
                as_json: bool = typer.Option(False, "--json")) -> None:
    from dsft.registry import db, store

    with db.session() as s:
        if ":" in ref or "@" in ref:
            mv = store.resolve(s, ref)
            out = {**store.version_dict(mv, store.aliases_of(s, mv.name).get(mv.version)), "config": mv.config}
        else:
            out = {"name": ref, "versions": store.versions(s, ref), "alias_log": store.alias_log(s, ref)}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if "versions" not in out:
        console.print_json(json.dumps(out))
        return
    table = Table("version", "aliases", "kind", "dataset", "metrics", "created")
    for v in out["versions"]:
        metrics = ", ".join(f"{k} {val:.3f}" for k, val in v["metrics"].items() if isinstance(val, float))[:70]
        table.add_row(str(v["version"]), ", ".join(v["aliases"]), v["kind"], (v["dataset_id"] or "")[:12], metrics,
                      v["created"][:19])
    console.print(table)
    for e in out["alias_log"]:
        console.print(f"{e['at'][:19]} {e['alias']}: {e['from']} -> {e['to']} {escape(e['reason'])}", highlight=False)


@models_app.command("diff")
def models_diff(a: str, b: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """What differs between two versions: config, data, metrics."""
    from sqlalchemy import select

    from dsft.registry import db, store
    from dsft.registry.schema import Dataset

    with db.session() as s:
        va, vb = store.resolve(s, a), store.resolve(s, b)
        ds = {d.id: d for d in s.scalars(select(Dataset).where(Dataset.id.in_([va.dataset_id, vb.dataset_id])))}
        out = store.diff(va, vb, ds)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(f"[bold]{out['a']} vs {out['b']}[/]")
    table = Table("config key", out["a"], out["b"])
    for k, (x, y) in out["config"].items():
        table.add_row(k, escape(str(x)), escape(str(y)))
    console.print(table if out["config"] else "config: identical")
    d = out["data"]
    console.print(f"data: {'same dataset' if d['same'] else 'different datasets'} ({d['a']} vs {d['b']})")
    table = Table("metric", out["a"], out["b"], "delta")
    for k, m in out["metrics"].items():
        table.add_row(k, str(m["a"]), str(m["b"]), "" if m["delta"] is None else f"{m['delta']:+.4f}")
    console.print(table)


@models_app.command("alias")
def models_alias(name: str, alias: str, version: int = typer.Argument(None, help="Omit with --delete."),
                 reason: str = typer.Option("", "--reason"), delete: bool = typer.Option(False, "--delete")) -> None:
    """Point NAME@ALIAS at VERSION (logged), or delete the alias."""
    from dsft.registry import store

    if version is None and not delete:
        raise UserError("give a VERSION, or --delete", f"e.g. dsft models alias {name} {alias} 3")
    ev = store.set_alias(name, alias, None if delete else version, reason or "cli")
    console.print(f"{name}@{alias}: {ev.old_version} -> {ev.new_version}")


@pipeline_app.command("run")
def pipeline_run(config: Path = typer.Argument(..., help="YAML: generate/inputs, prepare, train, eval, register."),
                 wait: bool = typer.Option(True, "--wait/--no-wait", help="Run here and wait (else only queue it).")) -> None:
    """collect/generate -> prepare -> train -> eval (vs base) -> register, as one job."""
    from dsft.registry import jobs
    from dsft.train.config import read_mapping

    spec = read_mapping(config, "configs/pipelines/lightdom.yaml")
    job_id = jobs.submit("pipeline", spec)
    console.print(f"queued pipeline job {job_id}")
    if not wait:
        return
    from dsft.registry.worker import Worker

    w = Worker(poll=0.2)
    shown = 0
    while True:
        w.tick()
        for e in jobs.events(job_id, shown):
            shown = e.id
            console.print(f"{e.created:%H:%M:%S} {e.kind:10s} {escape(json.dumps(e.data)[:160])}", highlight=False)
        job = jobs.get(job_id)
        if job.status in jobs.DONE:
            break
        time.sleep(0.2)
    w.shutdown()
    if job.status != "succeeded":
        raise UserError(f"pipeline {job.status}: {job.error}", f"see `dsft jobs show {job_id}`", exit_code=1)
    console.print_json(json.dumps(job.result))


def serve(model: list[str] = typer.Option(..., "--model", "-m",
                                          help="RUN folder, NAME@ALIAS or NAME:VERSION; repeat for several."),
          host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8001, "--port"),
          name: str = typer.Option("prod", "--name", help="The deployment target this server answers for."),
          backend: str = typer.Option("hf", "--backend", help="hf (transformers + peft) or vllm (GPU)."),
          max_batch: int = typer.Option(8, "--max-batch", min=1, help="Requests generated together (hf)."),
          poll: float = typer.Option(1.0, "--poll", help="Seconds between registry checks (deployments, A/B)."),
          registry: bool = typer.Option(True, "--registry/--no-registry",
                                        help="Follow deployments and A/B tests in the registry.")) -> None:
    """Serve models behind an OpenAI-compatible API (/v1/chat/completions, /v1/models, /metrics)."""
    import uvicorn

    from dsft.api.safety import api_key
    from dsft.serve.app import create_app

    if api_key() is None and not _loopback(host):
        raise UserError(f"refusing to listen on {host} without an API key",
                        "set DSFT_API_KEY (clients send Authorization: Bearer <key>), or use --host 127.0.0.1")
    if backend == "hf":
        from dsft.serve.hf import HFBackend

        engine = HFBackend(max_batch=max_batch)
    elif backend == "vllm":
        from dsft.serve.vllm import VLLMBackend

        engine = VLLMBackend()
    else:
        raise UserError(f"unknown backend {backend!r}", "use --backend hf or --backend vllm")
    def ready(listing: list[tuple[str, list[str]]]) -> None:
        served = "; ".join(f"{m}" + (f" (also {', '.join(a)})" if a else "") for m, a in listing)
        console.print(f"dsft serve on {_url(host, port)}/v1 ({backend} backend, target {name}): {_key_said()}; "
                      f"models: {served}", highlight=False, soft_wrap=True)

    uvicorn.run(create_app(engine, model, target=name, poll=poll, registry=registry, on_ready=ready), host=host,
                port=port, log_level="warning")


def deploy(ref: str = typer.Argument(..., help="NAME@ALIAS, NAME:VERSION, or a finished run folder"),
           target: str = typer.Option("prod", "--as", help="The `dsft serve --name` to deploy to."),
           canary: float = typer.Option(None, "--canary", help="Share of traffic (percent) for the new version."),
           name: str = typer.Option(None, "--name", help="With a run folder: the model name to register it as "
                                    "(default: the folder's name)."),
           wait: float = typer.Option(0, "--wait", help="Seconds to wait for the server to apply it (0: do not).")) -> None:
    """Deploy a registered version to a serving target; the server checks readiness before traffic moves.
    A run folder is registered first (as `dsft models register` does)."""
    from dsft.registry import rollout

    if Path(ref).is_dir() and ("@" not in ref and ":" not in ref or (Path(ref) / "config.yaml").is_file()):
        mv = _register(Path(ref), name or Path(ref).resolve().name)
        console.print(f"registered {ref} as {mv.name}:{mv.version}", highlight=False)
        ref = f"{mv.name}:{mv.version}"
    elif name:
        raise UserError("--name names the model a run folder is registered as", f"{ref} is not a run folder: drop --name")
    dep = rollout.deploy(ref, target, canary, {"via": "cli"})
    console.print(f"deployment {dep.id}: {dep.model}:{dep.version} -> {target} "
                  f"({dep.canary_percent:g}% of traffic), pending")
    deadline = time.monotonic() + wait
    while wait and time.monotonic() < deadline:
        status = rollout.get(dep.id)["status"]
        if status != "pending":
            console.print(f"deployment {dep.id}: {status}")
            if status == "failed":
                raise UserError(f"deployment {dep.id} failed its readiness check; the previous version stays live",
                                f"see `dsft deployments show {dep.id}`", exit_code=1)
            return
        time.sleep(0.5)


def export(ref: str = typer.Argument(..., help="RUN folder, NAME:VERSION or NAME@ALIAS"),
           out: Path = typer.Option(..., "--out", help="Folder to create."),
           merge: bool = typer.Option(True, "--merge/--no-merge", help="Fold the adapter into its base (always done)."),
           fmt: str = typer.Option("safetensors", "--format", help="safetensors (HF layout) or gguf (+ Ollama Modelfile)."),
           quant: str = typer.Option(None, "--quant", help="gguf: f32, f16 (default) or q8_0; awq/gptq need a GPU.")) -> None:
    """Export a trained model: merged safetensors with tokenizer, template and model card, or GGUF."""
    from dsft.deploy.export import export as run

    if fmt not in ("safetensors", "gguf"):
        raise UserError(f"unknown --format {fmt}", "use safetensors or gguf")
    if not merge:
        raise UserError("export always merges: a standalone model cannot need its adapter",
                        "drop --no-merge (serve the adapter with `dsft serve` instead)")
    result = run(ref, out, True, fmt, quant)
    console.print_json(json.dumps(result))
    pre = result.get("tokenizer", {})
    if pre.get("how") == "measured" and result.get("differing"):
        err_console.print(escape(f"note: llama.cpp has no pre-tokenizer exactly like this model's; {pre['pre']!r} "
                                 f"(written) tokenizes {pre['identical']} probe texts as training does. "
                                 f"It differs on, e.g., {result['differing'][0][:60]!r}."), highlight=False)


ab_app = typer.Typer(help="A/B tests between registered versions (traffic split by a stable hash of the user).",
                     no_args_is_help=True)


@ab_app.command("create")
def ab_create(model: str = typer.Argument(..., help="The model name clients request."),
              variant: list[str] = typer.Option(..., "--variant", "-v", help="VERSION[:WEIGHT], repeat for each."),
              metric: str = typer.Option("outcome_rate", "--metric", help="outcome_rate, rating or latency."),
              min_samples: int = typer.Option(100, "--min-samples"), alpha: float = typer.Option(0.05, "--alpha"),
              auto_promote: bool = typer.Option(False, "--auto-promote", help="Move the alias to a significant winner."),
              alias: str = typer.Option("champion", "--alias")) -> None:
    from dsft.registry import abtest

    variants = []
    for v in variant:
        version, _, weight = v.partition(":")
        if not version.isdigit():
            raise UserError(f"--variant {v!r} is not VERSION[:WEIGHT]", "e.g. --variant 1:90 --variant 2:10")
        try:
            variants.append({"version": int(version), "weight": float(weight or 1)})
        except ValueError:
            raise UserError(f"--variant {v!r}: the weight is not a number", "e.g. --variant 2:10") from None
    test = abtest.create(model, variants, metric, min_samples, alpha, auto_promote, alias)
    console.print(f"A/B test {test.id} on {model}: " + ", ".join(
        f"{v['name']}=v{v['version']} ({v['weight']:g})" for v in test.variants))


@ab_app.command("show")
def ab_show(test_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Per-variant numbers, significance and a recommendation (a significant winner ends the test)."""
    from dsft.registry import abtest

    res = abtest.results(test_id)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    mean = {"rating": ("rating_mean", "rating_sd"), "latency": ("latency_ms_mean", "latency_ms_sd")}.get(res["metric"])
    table = Table("variant", "version", "weight", "requests", "errors", "outcomes", "rate", "95% CI", "P(best)",
                  *([f"{res['metric']} mean ± sd"] if mean else []))
    for v in res["variants"]:
        rate = "n/a" if v["rate"] is None else f"{v['rate']:.3f}"
        shown = [] if not mean else ["n/a" if v[mean[0]] is None else f"{v[mean[0]]:.3f}" + (
            f" ± {v[mean[1]]:.3f}" if v[mean[1]] is not None else "")]
        table.add_row(v["name"], str(v["version"]), f"{v['weight']:g}", str(v["requests"]), str(v["errors"]),
                      str(v["outcomes"]), rate, f"[{v['rate_ci95'][0]:.3f}, {v['rate_ci95'][1]:.3f}]",
                      f"{v.get('prob_best', 0):.3f}", *shown)
    console.print(table)
    if res["p_values"]:
        console.print(f"{res['test']} p-values against the leader {res['leader']}: " + ", ".join(
            f"{k} {p:.4f}" for k, p in res["p_values"].items()) + f" (a winner needs < {res['threshold']:.4g})")
    console.print(f"{res['status']}: {res['recommendation']}" + (f"; {res['promoted']}" if res.get("promoted") else ""))


@ab_app.command("stop")
def ab_stop(test_id: str) -> None:
    from dsft.registry import abtest

    abtest.stop(test_id)
    console.print(f"A/B test {test_id} stopped; its traffic returns to the live version")
