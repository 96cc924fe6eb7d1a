"""`dsft demo`: the guide's demo, every phase through dsft's own REST API, on the embedded default.

It starts the service (API + worker) on 127.0.0.1 and walks the guide's phases as a client would:

  phase 1  generate LightDom tool-use examples, upload the guide's examples and a mixed-layout
           sample with broken rows, score them, prepare a dataset (validate, deduplicate, split);
  phase 2  configure the tiny DeepSeek-V3 model's training (presets, memory estimate), generate
           a standalone training script, train as a job while its events stream in;
  eval     base vs trained on two held-out sets generated from what training never saw: values of
           the scenarios' slots held out (training's phrasings), and held-out phrasings with those
           values (tool names, exact arguments, irrelevance);
  phase 3  register the trained model as lightdom:N and point `champion` at it;
  phase 4  deploy it to `prod`, start `dsft serve` (readiness-checked) and call it with the
           official openai client on a held-out request: the tool call (checked against the
           reference and reported correct or WRONG; `--strict` makes a wrong one exit non-zero: not
           the default while the 4-minute run still serves wrong calls, so `make demo` completes),
           the tool's result, the final answer;
  continuous  send new examples (one broken) and show the loop's status;

then prints a summary: dataset counts, training time, base vs trained, the registered version.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import typer
from rich.console import Console

from dsft.errors import UserError

console = Console()


def demo(n: int = typer.Option(1200, "-n", help="Generated tool-use examples."),
         seed: int = typer.Option(0, "--seed"),
         epochs: float = typer.Option(None, "--epochs", help="Override the tiny preset's epochs."),
         time_budget: str = typer.Option("4m", "--time-budget", help="Training time (the tiny preset's is 10m)."),
         eval_limit: int = typer.Option(100, "--eval-limit", help="Held-out examples scored per held-out set."),
         strict: bool = typer.Option(False, "--strict/--no-strict",
                                     help="Exit non-zero when the served call on the held-out request is wrong "
                                          "(default: report it as WRONG in phase 4 and the summary).")) -> None:
    """Start the service on 127.0.0.1 and walk every phase of the guide through its REST API."""
    from dsft.train.schedule import parse_duration

    started = time.perf_counter()
    budget = parse_duration(time_budget)
    with Service() as api, httpx.Client(base_url=api.url, timeout=120) as c:
        console.rule(f"[bold]dsft service on {api.url} (API + worker; OpenAPI at {api.url}/docs)")
        dataset, held = _phase1(c, n, seed, eval_limit)
        run = _phase2(c, dataset, seed, epochs, budget)
        comparison = _evaluate(c, held, run, eval_limit)
        version = _phase3(c, run, dataset)
        served = _phase4(c, version, held)
        _continuous(c)
        _summary(dataset, run, comparison, version, time.perf_counter() - started, served, held)
    if not served["correct"] and strict:
        raise UserError("the served model did not make the correct tool call (see phase 4 above)",
                        "train longer (--time-budget) or with more data (-n)")


class Service:
    """`dsft api` (or, given an app, `dsft serve`) in a thread of this process, on a free loopback port."""

    def __init__(self, app=None):
        self.app = app

    def __enter__(self):
        import socket

        import uvicorn

        from dsft.api.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app or create_app(worker=True), host="127.0.0.1",
                                                    port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise UserError("the demo service did not start", "see the messages above")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=120)


def _call(c: httpx.Client, method: str, url: str, **kw) -> dict:
    r = c.request(method, url, **kw)
    if r.status_code >= 400:
        raise UserError(f"{method} {url} answered {r.status_code}: {r.text[:400]}", "this is a dsft bug: please report it")
    console.print(f"[dim]{method} {url} -> {r.status_code}[/]")
    return r.json()


def _follow(c: httpx.Client, job_id: str, show=lambda e: None) -> dict:
    """Stream the job's events (server-sent events) until it ends; returns the finished job."""
    with c.stream("GET", f"/api/jobs/{job_id}/events", params={"follow": "true"}, timeout=None) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                show(json.loads(line[6:]))
    job = c.get(f"/api/jobs/{job_id}").json()
    if job["status"] != "succeeded":
        raise UserError(f"job {job_id} {job['status']}: {job['error']}", f"see DSFT_HOME/jobs/{job_id}/log.txt")
    return job


def _phase1(c: httpx.Client, n: int, seed: int, held_n: int) -> tuple[dict, dict]:
    from dsft.cli.data import print_report
    from dsft.data.generate import builtin

    console.rule("[bold]phase 1: data")
    gen = _call(c, "POST", "/api/finetuning/phase1/generate-tool-examples",
                json={"n": n, "seed": seed, "hold_out": 0.25, "held_out_n": held_n})
    what = gen["held_out"]
    console.print(f"{gen['count']} tool-use conversations from the built-in LightDom scenarios -> {gen['path']}; "
                  f"held out of them, for testing only: {what['phrasings']} request phrasings, "
                  f"{what['out_of_domain_requests']} out-of-domain requests and values of "
                  + ", ".join(f"{k} ({v})" for k, v in what["values"].items()), highlight=False)
    samples = sorted(p for p in Path(str(builtin("samples"))).iterdir() if p.is_file())
    uploads = [_call(c, "POST", "/api/datasets", files={"file": (p.name, p.read_bytes())})["path"] for p in samples]
    tools = _call(c, "POST", "/api/datasets", files={"file": ("lightdom_tools.json",
                                                              builtin("lightdom_tools.json").read_bytes())})["path"]
    console.print(f"uploaded the guide's examples and a mixed-layout sample: {', '.join(p.name for p in samples)}")
    scored = _call(c, "POST", "/api/finetuning/phase1/score-quality", json={"path": uploads[-1]})
    bad = [e for e in scored["examples"] if not e["valid"]]
    console.print(f"score-quality on {samples[-1].name}: {scored['valid']}/{scored['count']} valid, mean quality "
                  f"{scored['mean_quality']:.0f}; rejected: " + ", ".join(
                      f"line {e['line']} [{e['findings'][0]['code']}]" for e in bad[:4]))
    job = _call(c, "POST", "/api/finetuning/phase1/create-validation-split",
                json={"inputs": [gen["path"], *uploads], "tools": tools, "seed": seed})
    done = _follow(c, job["job_id"])
    dataset = _call(c, "GET", f"/api/datasets/{done['result']['dataset_id']}")
    print_report(dataset["report"], Path(dataset["path"]))
    held = {"new_values": gen["new_values"], "new_phrasings": gen["new_phrasings"], "what": what}
    return dataset, held


def _phase2(c: httpx.Client, dataset: dict, seed: int, epochs: float | None, budget: float) -> dict:
    console.rule("[bold]phase 2: configure and train the tiny DeepSeek-V3 model (MLA + MoE)")
    config = {"model": {"name_or_path": "tiny"}, "data": {"train": [dataset["path"] + "/train.jsonl"]},
              "training": {"seed": seed, "time_budget": budget, **({"epochs": epochs} if epochs else {})}}
    conf = _call(c, "POST", "/api/finetuning/phase2/configure", json={"config": config})
    t = conf["config"]["training"]
    console.print(f"resolved config {conf['config_id']}: {conf['config']['method']} finetune, lr {t['learning_rate']:g}, "
                  f"up to {t['epochs']:g} epochs in {t['time_budget']:g}s, batch {t['batch_size']}, copy augmentation "
                  f"{conf['config']['data']['copy_augment']:g} (the tiny model's measured preset); memory "
                  f"estimate {conf['memory']['total_gb'] * 1024:.0f} MiB for {conf['memory']['params']:,} parameters")
    _call(c, "POST", "/api/finetuning/phase2/generate-scripts", json={"config_id": conf["config_id"]})
    script = c.get("/api/finetuning/phase2/training-script", params={"config_id": conf["config_id"]}).text
    console.print(f"standalone training script: {len(script.splitlines())} lines (transformers + peft), "
                  "GET /api/finetuning/phase2/training-script")
    job = _call(c, "POST", "/api/jobs", json={"kind": "train", "spec": {
        "dataset_id": dataset["id"], "config": {k: v for k, v in conf["config"].items() if k != "output"}}})

    def show(event: dict) -> None:
        d = event["data"]
        if event["kind"] == "progress" and (d.get("eval_loss") is not None or d["step"] == d["total"]):
            console.print(f"  step {d['step']}/{d['total']} loss {d['loss']:.3f}"
                          + (f" eval {d['eval_loss']:.3f}" if d.get("eval_loss") else "")
                          + (f" exact args {d['eval_tool_args_exact_match']:.2f}"
                             if d.get("eval_tool_args_exact_match") is not None else "")
                          + (" (best so far)" if d.get("best") else ""))

    run = _follow(c, job["job_id"], show)["result"]
    console.print(f"trained in {run['seconds']:.0f}s ({run['tokens_per_s']:.0f} tokens/s), eval loss "
                  f"{run['eval_loss']:.3f} -> {run['run']}")
    return {**run, "job_id": job["job_id"]}


HELD_OUT = {"new_values": "unseen values (training's phrasings)",
            "new_phrasings": "unseen phrasings and unseen values"}


def _evaluate(c: httpx.Client, held: dict, run: dict, limit: int) -> dict:
    """Base vs trained on each held-out set: rows whose values (and then phrasings) training never saw."""
    from dsft.cli.evaluate import print_comparison

    out = {}
    for key, title in HELD_OUT.items():
        console.rule(f"[bold]held-out tool use, {title}: base vs trained (greedy, shared renderer + parser)")
        job = _call(c, "POST", "/api/jobs", json={"kind": "eval", "spec": {
            "baseline": "tiny", "model": run["run"], "data": [held[key]["path"]], "limit": limit}})
        result = _follow(c, job["job_id"])["result"]
        print_comparison(SimpleNamespace(metrics=result["metrics"], per_metric=result["per_metric"],
                                         sides=result["sides"], improved=[], regressed=result["regressed_examples"]),
                         ("baseline", "model"), show=2, console=console)
        out[key] = result["metrics"]
    return out


def _phase3(c: httpx.Client, run: dict, dataset: dict) -> dict:
    console.rule("[bold]phase 3: register and version")
    mv = _call(c, "POST", "/api/finetuning/phase3/register-model",
               json={"name": "lightdom", "job_id": run["job_id"], "alias": "champion",
                     "description": "dsft demo"})
    console.print(f"registered {mv['ref']} ({mv['kind']}, sha256 {mv['artifact_sha256'][:12]}..., dataset "
                  f"{mv['dataset_id'][:12]}..., config {mv['config_hash'][:12]}...) and pointed champion at it")
    models = _call(c, "GET", "/api/finetuning/phase3/models")["models"]
    console.print("models: " + ", ".join(f"{m['name']} (latest {m['latest']}, aliases {m['aliases']})" for m in models))
    return mv


def _phase4(c: httpx.Client, version: dict, held: dict) -> dict:
    """Deploy the champion to `prod`, start `dsft serve` for it and call it with the openai client, on a
    held-out request (values training never saw); the call must be exactly the reference's."""
    import openai

    from dsft.data.conversation import ToolCall
    from dsft.eval.tool_metrics import score_calls
    from dsft.home import dsft_home
    from dsft.serve.app import create_app
    from dsft.serve.hf import HFBackend
    from dsft.train.trainer import load_conversations

    console.rule("[bold]phase 4: deploy and serve (OpenAI-compatible)")
    convs, _ = load_conversations([str(dsft_home() / held["new_values"]["path"])])
    conv = next(c for c in convs if len(c.messages) > 2 and len(c.messages[2].tool_calls or ()) == 1)
    row = conv.to_openai()
    reference = conv.messages[2].tool_calls
    dep = _call(c, "POST", "/api/finetuning/phase4/deploy", json={"model": "lightdom@champion", "target": "prod"})
    with Service(create_app(HFBackend(), [version["ref"]], target="prod", poll=0.5)) as gateway:
        deadline = time.monotonic() + 300
        while (state := c.get(f"/api/finetuning/phase4/deployments/{dep['id']}").json())["status"] == "pending":
            if time.monotonic() > deadline:
                raise UserError("the deployment was not applied in time", "see the serve output")
            time.sleep(0.3)
        console.print(f"deployment {dep['id']} of {dep['ref']} to prod: {state['status']} "
                      f"(readiness checked in {state['health'].get('load_and_check_seconds', 0)}s) at {gateway.url}/v1")
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="demo")
        messages = row["messages"][:2]  # the system prompt and a held-out request
        console.print(f"held-out request: {messages[1]['content']!r}", highlight=False)
        first = client.chat.completions.create(model="prod", messages=messages, tools=row["tools"])
        msg = first.choices[0].message
        calls = [(t.function.name, t.function.arguments) for t in msg.tool_calls or []]
        made = [ToolCall(id=t.id, name=t.function.name, arguments=_arguments(t.function.arguments))
                for t in msg.tool_calls or []]
        correct = score_calls(made, reference, conv.tools or []).exact
        console.print(f"openai client -> prod: finish_reason {first.choices[0].finish_reason}, tool_calls {calls}",
                      highlight=False)
        console.print(("[green]correct:[/] " if correct else "[red]NOT the reference call:[/] ")
                      + f"reference {[(r.name, r.arguments) for r in reference]}", highlight=False)
        shown = {"tool_calls": calls, "content": msg.content, "correct": correct, "request": messages[1]["content"]}
        if msg.tool_calls:
            result = conv.messages[3].content if conv.messages[3].role == "tool" else '{"success": true}'
            messages += [msg.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": msg.tool_calls[0].id,
                                                             "content": result}]
            final = client.chat.completions.create(model="prod", messages=messages, tools=row["tools"])
            shown["final"] = final.choices[0].message.content
            console.print(f"tool result {result!r}\nafter the tool result: {final.choices[0].message.content!r}",
                          highlight=False)
    return {"deployment": dep["id"], **shown}


def _arguments(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"<unparsed>": text}
    return value if isinstance(value, dict) else {"<not an object>": value}


def _continuous(c: httpx.Client) -> None:
    from dsft.data.generate import generate, load_scenarios

    console.rule("[bold]continuous training: examples arrive")
    fresh = generate(load_scenarios(), 3, seed=99) + [{"messages": [{"role": "user", "content": "hi"}]}]
    got = _call(c, "POST", "/api/finetuning/continuous/add-example", json={"examples": fresh})
    console.print(f"{got['accepted']} accepted, {got['rejected']} rejected (" + ", ".join(
        f"#{e['index']}: {e['findings'][0]['code']}" for e in got["examples"] if not e["accepted"]) + ")")
    status = _call(c, "GET", "/api/finetuning/continuous/status")
    console.print(f"buffer {status['buffered']}; a retrain starts at {status['next_trigger']['threshold']} "
                  f"({status['next_trigger']['remaining']} to go) or on POST continuous/trigger; it is promoted "
                  f"only if it beats the champion ({status['champion']}) on "
                  f"{status['policy']['gate']['metric']}")


def _summary(dataset: dict, run: dict, metrics: dict, version: dict, seconds: float, served: dict,
             held: dict) -> None:
    console.rule("[bold]summary")
    c = dataset["counts"]
    console.print(f"dataset  {dataset['id'][:16]}...: {c['read']} read, {c['train']} train, {c['validation']} "
                  f"validation, {c['rejected']} rejected, {c['duplicates']} duplicates")
    kept = run.get("kept") or {}
    console.print(f"training {run['seconds']:.0f}s, {run['steps']} steps, eval loss {run['eval_loss']:.3f}, "
                  f"{run.get('augmented') or 0} copy-augmented rows"
                  + (f", kept the best step ({kept['step']} of {kept['last_step']}, {kept['metric']} "
                     f"{kept['value']:.3f})" if kept else ""))
    for key, title in HELD_OUT.items():
        m = metrics[key]
        console.print(f"held out, {title} ({held[key]['count']} rows generated):")
        for name in ("tool_name_accuracy", "tool_args_exact_match", "irrelevance_accuracy"):
            if name in m and m[name]["model"] is not None:
                base = m[name]["baseline"]
                console.print(f"  {name:22s} base {'n/a' if base is None else f'{base:.3f}'} -> trained "
                              f"{m[name]['model']:.3f}")
    verdict = "correct" if served["correct"] else "WRONG (not the reference call; see phase 4)"
    console.print(f"served call on a held-out request: {verdict}; registered {version['ref']} (alias champion), "
                  f"deployed to prod (deployment {served['deployment']}); demo took {seconds / 60:.1f} min")
