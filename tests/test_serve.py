"""`dsft serve` with the official `openai` client, on a tiny model trained here; deployments and
A/B tests followed from the registry."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator

from tests.conftest import free_port, start_dsft, stop_process

SYSTEM = {"role": "system", "content": "You are LightDom's assistant. Use the tools to act."}


TRAIN_ROWS = 4  # one batch, 200 steps: the from-scratch tiny model learns it by heart (8 rows: 7 of 8 calls exact)


def training_request() -> list[dict]:
    """System prompt and request of a training row that calls one tool (not generateSchema): these
    tests are about serving, so they ask what the tiny model was trained on."""
    from dsft.data.generate import generate, load_scenarios

    for row in generate(load_scenarios(), TRAIN_ROWS, seed=3):
        calls = row["messages"][2].get("tool_calls") or []
        if len(calls) == 1 and calls[0]["function"]["name"] != "generateSchema":
            return row["messages"][:2]
    raise AssertionError("no single-call training row")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_random_model) -> Path:
    """The tiny model trained on LightDom tool use (the tiny preset on few rows, no budget or
    evaluations): about a minute once per worker. Without the copy circuit: trained this way (200
    epochs of a few rows) the circuit model's answer after a tool result runs to max_tokens (issue 11's
    note), and these tests are about the protocol."""
    import orjson

    from dsft.data.generate import generate, load_scenarios
    from dsft.train.config import load
    from dsft.train.trainer import train

    root = tmp_path_factory.mktemp("served")
    data = root / "train.jsonl"
    data.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(load_scenarios(), TRAIN_ROWS, seed=3)))
    cfg = load(None, {"model.name_or_path": str(tiny_random_model), "data.train": [str(data)], "output.dir": str(root / "run"),
                      "data.val_ratio": 0.0, "data.copy_augment": 0, "training.epochs": 200,
                      "training.eval_every": 100000, "training.eval_tool_sample": 0, "training.time_budget": None})
    train(cfg)
    return root / "run"


def tools() -> list[dict]:
    from dsft.data.generate import builtin
    from dsft.data.layouts import load_tools

    return [{"type": "function", "function": t} for t in load_tools(builtin("lightdom_tools.json"))]


class Server:
    def __init__(self, home: Path, *args: str, env: dict | None = None):
        self.log = home.parent / f"serve-{free_port()}.log"
        self.proc, self.url, self.port = start_dsft(["serve", *args], home, env or {}, self.log, timeout=120)

    def client(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def serve(tmp_path):
    started: list[Server] = []

    def start(*args: str, env: dict | None = None) -> Server:
        s = Server(tmp_path / "home", *args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.mark.slow
def test_openai_client_chat_stream_and_tool_round_trip(serve, trained_run):
    server = serve("-m", str(trained_run), "--no-registry")
    c = server.client()
    listed = c.models.list().data
    assert [m.id for m in listed] == ["run"], "one entry per model, not one per name it answers to"
    assert listed[0].model_extra["aliases"] == sorted([str(trained_run), "prod"])
    said = " ".join(server.log.read_text().split())
    assert f"dsft serve on {server.url}/v1" in said and "models: run (also" in said and "no API key" in said
    plain = c.chat.completions.create(model="run", messages=[{"role": "user", "content": "Say hello"}], max_tokens=12)
    assert plain.choices[0].message.role == "assistant" and isinstance(plain.choices[0].message.content, str)
    assert plain.usage.completion_tokens <= 12 and plain.usage.prompt_tokens > 0

    messages = training_request()
    first = c.chat.completions.create(model="run", messages=messages, tools=tools())
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert call.function.name in {t["function"]["name"] for t in tools()}
    assert isinstance(json.loads(call.function.arguments), dict)  # a JSON string at the API boundary

    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"score": 81, "issues": []}'}]
    final = c.chat.completions.create(model="run", messages=messages, tools=tools())
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content
    assert not final.choices[0].message.tool_calls

    chunks = list(c.chat.completions.create(model="run", messages=messages[:2], tools=tools(), stream=True,
                                            stream_options={"include_usage": True}))
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    assert deltas[0].role == "assistant"
    streamed = [tc for d in deltas for tc in d.tool_calls or []]
    assert streamed and streamed[0].function.name == call.function.name
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0

    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="run", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=10) if ch.choices)
    assert isinstance(text, str)

    forced = c.chat.completions.create(model="run", messages=messages[:2], tools=tools(),
                                       tool_choice={"type": "function", "function": {"name": "generateSchema"}})
    assert call.function.name != "generateSchema"  # left alone, the model picks another tool
    assert forced.choices[0].message.tool_calls[0].function.name == "generateSchema"
    schema = next(t["function"]["parameters"] for t in tools() if t["function"]["name"] == "generateSchema")
    forced_args = json.loads(forced.choices[0].message.tool_calls[0].function.arguments)
    assert not list(Draft202012Validator(schema).iter_errors(forced_args))  # decoded under the tool's grammar
    free = c.chat.completions.create(model="run", messages=messages[:2], tools=tools(),
                                     extra_body={"constrain_tool_calls": False})
    assert free.choices[0].finish_reason in {"stop", "tool_calls", "length"}
    required = c.chat.completions.create(model="run", messages=messages[:2], tools=tools(), tool_choice="required")
    assert required.choices[0].message.tool_calls
    none = c.chat.completions.create(model="run", messages=messages[:2], tools=tools(), tool_choice="none")
    assert not none.choices[0].message.tool_calls
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="nope", messages=messages[:2])
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="run", messages=[{"role": "bogus", "content": "x"}])

    ready = httpx.get(server.url + "/ready").json()
    assert ready["ready"] is True
    metrics = httpx.get(server.url + "/metrics").text
    assert 'dsft_requests_total{route="run",status="ok",variant="live",version="run"}' in metrics
    assert "dsft_request_seconds_bucket" in metrics and 'direction="out"' in metrics


@pytest.mark.slow
def test_100_concurrent_requests_all_well_formed(serve, trained_run):
    server = serve("-m", str(trained_run), "--no-registry")
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)

    async def one(k: int):
        msgs = [SYSTEM, {"role": "user", "content": f"Audit the SEO of https://site{k}.example"}]
        if k % 2:
            return await client.chat.completions.create(model="run", messages=msgs, tools=tools(), max_tokens=48)
        return await client.chat.completions.create(model="run", messages=msgs[1:], max_tokens=16, user=f"u{k}")

    async def all_of_them():
        return await asyncio.gather(*(one(k) for k in range(100)))

    results = asyncio.run(all_of_them())
    assert len(results) == 100
    for r in results:
        choice = r.choices[0]
        assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length", "tool_calls")
        assert choice.message.content is not None or choice.message.tool_calls
        for call in choice.message.tool_calls or []:
            json.loads(call.function.arguments)
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.slow
def test_serve_requires_the_key_when_set(serve, trained_run):
    server = serve("-m", str(trained_run), "--no-registry", env={"DSFT_API_KEY": "k1"})
    assert httpx.get(server.url + "/health").status_code == 200
    for path in ("/v1/models", "/metrics", "/ready"):
        assert httpx.get(server.url + path).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        server.client("wrong").models.list()
    assert server.client("k1").models.list().data


def register_copies(home: Path, run: Path, n: int, broken: int | None = None) -> None:
    """Versions 1..n of `lightdom` from copies of one run; version `broken` cannot load."""
    from dsft.registry import db, store

    for k in range(1, n + 1):
        folder = home / "runs" / f"v{k}"
        shutil.copytree(run, folder)
        store.register(store.Registration("lightdom", folder))
        if k == broken:
            (folder / "model.safetensors").write_bytes(b"not weights")
    db.dispose()


def wait_status(dep_id: int, timeout: float = 120) -> str:
    from dsft.registry import rollout

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = rollout.get(dep_id)["status"]
        if status != "pending":
            return status
        time.sleep(0.3)
    raise TimeoutError(dep_id)


@pytest.mark.slow
def test_deploy_roll_forward_to_a_broken_version_rolls_back_and_no_request_fails(serve, trained_run, tmp_path):
    from dsft.registry import rollout

    home = tmp_path / "home"
    register_copies(home, trained_run, 3, broken=3)
    first = rollout.deploy("lightdom:1", "prod")
    server = serve("-m", "lightdom:1", "--name", "prod", "--poll", "0.3")
    assert wait_status(first.id) == "live"
    c = server.client()
    failures, versions, stop = [], [], threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as h:
            while not stop.is_set():
                r = h.post("/v1/chat/completions", json={"model": "prod", "max_tokens": 4,
                                                         "messages": [{"role": "user", "content": "ping"}]})
                if r.status_code != 200 or not r.json()["choices"][0]["message"]["role"] == "assistant":
                    failures.append((r.status_code, r.text[:200]))
                versions.append(r.headers.get("x-dsft-version"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        second = rollout.deploy("lightdom:2", "prod")
        assert wait_status(second.id) == "live"
        time.sleep(1.0)
        broken = rollout.deploy("lightdom:3", "prod")
        assert wait_status(broken.id) == "failed"
        kinds = [e["kind"] for e in rollout.get(broken.id)["events"]]
        assert kinds == ["requested", "failed", "rolled_back"]
        time.sleep(1.0)
        assert c.chat.completions.with_raw_response.create(
            model="prod", messages=[{"role": "user", "content": "hi"}], max_tokens=2).headers["x-dsft-version"] == \
            "lightdom:2"  # traffic never moved to the broken version
        back = rollout.rollback(second.id)
        assert wait_status(back.id) == "live"
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert "lightdom:1" in versions and "lightdom:2" in versions and "lightdom:3" not in versions
    assert versions[-1] == "lightdom:1"  # after the rollback
    statuses = {d["id"]: d["status"] for d in rollout.listing("prod")}
    assert statuses[second.id] == "rolled_back" and statuses[broken.id] == "failed" and statuses[back.id] == "live"


@pytest.mark.slow
def test_ab_test_routes_users_stickily_and_counts_traffic(serve, trained_run, tmp_path):
    from dsft.registry import abtest

    home = tmp_path / "home"
    register_copies(home, trained_run, 2)
    server = serve("-m", "lightdom:1", "--poll", "0.3")
    test = abtest.create("lightdom", [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}], min_samples=5)
    c = server.client()

    def variant_of(user: str) -> str:
        return c.chat.completions.with_raw_response.create(model="lightdom", user=user, max_tokens=2, messages=[
            {"role": "user", "content": "hi"}]).headers["x-dsft-variant"]

    deadline = time.monotonic() + 120
    while variant_of("probe") not in ("A", "B"):  # the gateway picks the test up on its next poll
        assert time.monotonic() < deadline, "the gateway never applied the A/B test"
        time.sleep(0.3)
    seen: dict[str, set] = {}
    for _ in range(3):
        for user in (f"user{k}" for k in range(16)):
            seen.setdefault(user, set()).add(variant_of(user))
    assert all(len(v) == 1 for v in seen.values())  # sticky
    assert set().union(*seen.values()) == {"A", "B"}
    for user, (variant,) in seen.items():
        assert variant == abtest.assign(test.id, test.variants, user)  # the API can attribute outcomes
    time.sleep(1.0)  # the gateway flushes its counts
    res = abtest.results(test.id, promote=False)
    assert sum(v["requests"] for v in res["variants"]) >= 6


@pytest.mark.slow
def test_vllm_backend_against_a_double_of_vllm(serve, tmp_path):
    from tests.test_export import lora_run

    root = tmp_path / "runs"
    root.mkdir()
    run = lora_run(root, "deepseek_v3", **{"lora.targets": "vllm"})  # what vLLM applies: no kv_b_proj
    second = root / "second"
    shutil.copytree(run, second)
    log = tmp_path / "vllm-argv.jsonl"
    double = f"{sys.executable} {Path(__file__).parent / 'vllm_double.py'}"
    server = serve("-m", str(run), "-m", str(second), "--no-registry", "--backend", "vllm",
                   env={"DSFT_VLLM_COMMAND": double, "VLLM_DOUBLE_LOG": str(log)})
    argv = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(argv) == 1  # one vLLM process for both adapters of the same base
    args = argv[0]
    assert args[:2] == ["serve", str(run.parent / "tiny-deepseek_v3")]
    for flag in ("--enable-lora", "--enable-auto-tool-choice", "--api-key", "--chat-template"):
        assert flag in args
    assert args[args.index("--tool-call-parser") + 1] == "deepseek_v3"
    assert args[args.index("--lora-modules") + 1] == f"run-deepseek_v3={run}"
    assert args[args.index("--structured-outputs-config.backend") + 1] == "guidance"
    c = server.client()
    assert {"run-deepseek_v3", "second"} <= {m.id for m in c.models.list().data}
    for model in ("run-deepseek_v3", "second"):  # the second adapter was added at run time
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens <= 5
    chunks = list(c.chat.completions.create(model="second", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=5, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    # tool calls under their grammar, sent the way vLLM 0.12+ takes it (the double refuses guided_*)
    declared = tools()[:2]
    r = c.chat.completions.create(model="second", messages=[{"role": "user", "content": "audit example.com"}],
                                  tools=declared, tool_choice="required", parallel_tool_calls=False, max_tokens=64)
    bodies = [json.loads(line) for line in Path(str(log) + ".bodies").read_text().splitlines()]
    assert "grammar" in bodies[-1]["structured_outputs"] and not [k for k in bodies[-1] if k.startswith("guided_")]
    names = {t["function"]["name"] for t in declared}
    calls = r.choices[0].message.tool_calls or []
    assert all(call.function.name in names for call in calls)
    assert calls or r.choices[0].finish_reason == "length"  # forced and declared; a tiny model may run out


@pytest.mark.parametrize("config, refused", [
    ({"peft_type": "LORA", "r": 16, "target_modules": ["q_a_proj", "o_proj"]}, None),
    ({"peft_type": "LORA", "r": 16, "use_dora": True, "target_modules": ["q_proj"]}, "DoRA adapter"),
    ({"peft_type": "IA3", "target_modules": ["q_proj"]}, "IA3 adapter"),
    ({"peft_type": "LORA", "r": 16, "target_modules": ["model.layers.0.self_attn.kv_b_proj"]}, "#48974"),
    ({"peft_type": "LORA", "r": 16, "target_modules": ["q_proj"], "target_parameters": ["mlp.experts.down_proj"]},
     "fused expert weights"),
    ({"peft_type": "LORA", "r": 128, "target_modules": ["q_proj"]}, "above vLLM's --max-lora-rank 64"),
])
def test_vllm_refuses_adapters_it_would_not_serve_as_trained(tmp_path, config, refused):
    from dsft.errors import UserError
    from dsft.serve.vllm import check_adapter

    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    try:
        check_adapter(tmp_path, max_lora_rank=64)
        assert refused is None
    except UserError as e:
        assert refused is not None and refused in e.message and "dsft export" in e.fix


def test_canary_routes_a_sticky_share_of_users():
    from dsft.serve.router import Route, Table, Variant

    route = Route("prod", (Variant("live", "lightdom:1", 90), Variant("canary", "lightdom:2", 10)), salt="deployment-7")
    table = Table().with_route(route, "lightdom")
    picks = [table.routes["prod"].pick(f"user{k}").name for k in range(10000)]
    assert abs(picks.count("canary") / len(picks) - 0.10) < 0.015
    assert picks == [table.routes["lightdom"].pick(f"user{k}").name for k in range(10000)]  # sticky, on every alias


def test_the_gateway_never_invents_a_tool_and_tool_choice_none_writes_text(tiny_random_model):
    """A model that prefers an undeclared tool's name (`finduration_free_slot`, seen from a real
    run): `required` still calls a declared tool (the grammar); a call to an undeclared tool in
    the model's text (the grammar off, or a vllm backend) comes back as content, never as a call;
    a model that prefers opening a call writes text under `none` instead of an empty reply (the
    opener is banned, not a stop)."""
    import torch

    from dsft.chat.families import FAMILIES
    from dsft.serve import chat_api
    from dsft.serve.backend import Generation, Request
    from dsft.serve.hf import HFBackend

    backend = HFBackend()
    asyncio.run(backend.load("m", str(tiny_random_model)))
    served = backend._served["m"]
    tok, v3 = served.tokenizer, FAMILIES["deepseek_v3"]
    bias = torch.zeros(served.model.config.vocab_size)

    class Biased(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, x):
            return self.head(x) + bias

    served.model.lm_head = Biased(served.model.lm_head)
    declared = [{"type": "function", "function": {"name": n, "parameters": {
        "type": "object", "properties": {"day": {"type": "string", "enum": ["mon", "tue"]}}, "required": ["day"],
        "additionalProperties": False}}} for n in ("find_free_slot", "cancel_event")]

    def request(**fields) -> chat_api.ChatRequest:
        return chat_api.ChatRequest(model="m", messages=[{"role": "user", "content": "when are we free?"}],
                                    tools=declared, max_tokens=48, **fields)

    def ask(**fields) -> dict:
        req = request(**fields)
        prompt, prefix = chat_api.prompt_ids(req, tok, v3)
        sampling = chat_api.sampling(req, v3, chat_api.tool_grammar(req, tok, v3, prompt, prefix))
        gen = asyncio.run(backend.generate(Request("m", prompt, sampling)))
        return chat_api.completion(req, "m", gen, prefix, v3)["choices"][0]

    try:
        bias[tok.encode("finduration_free_slot", add_special_tokens=False)] = 30.0
        required = ask(tool_choice="required", parallel_tool_calls=False)  # a random model would chain calls
        assert required["finish_reason"] == "tool_calls", required
        assert required["message"]["tool_calls"][0]["function"]["name"] in {"find_free_slot", "cancel_event"}

        invented = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>finduration_free_slot\n"
                    '```json\n{"day":"mon"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>')
        gen = Generation(text=invented, prompt_tokens=1, completion_tokens=1, finish_reason="stop")
        choice = chat_api.completion(request(), "m", gen, "", v3)["choices"][0]
        assert not choice["message"].get("tool_calls") and "finduration_free_slot" in choice["message"]["content"]
        assert choice["finish_reason"] == "stop"

        bias.zero_()
        bias[tok.convert_tokens_to_ids("<｜tool▁calls▁begin｜>")] = 30.0
        assert ask(parallel_tool_calls=False)["finish_reason"] == "tool_calls"  # the model does prefer a call ...
        none = ask(tool_choice="none")  # ... and under `none` writes text instead
        assert not none["message"].get("tool_calls") and none["message"]["content"].strip(), none
    finally:
        asyncio.run(backend.close())


@pytest.mark.parametrize("routes, listing", [
    ({"full8": ["full8"], "prod": ["full8"], "runs/full8": ["full8"]}, [("full8", ["prod", "runs/full8"])]),
    ({"a": ["a"], "b": ["b"], "prod": ["a"]}, [("a", ["prod"]), ("b", [])]),
    ({"lightdom:1": ["lightdom:1"], "prod": ["lightdom:1"], "lightdom": ["lightdom:1"]},  # after a deployment
     [("lightdom:1", ["lightdom", "prod"])]),
    ({"lightdom:2": ["lightdom:2"], "prod": ["lightdom:1", "lightdom:2"], "lightdom": ["lightdom:1", "lightdom:2"],
      "lightdom:1": ["lightdom:1"]},  # a canary on prod: its own entry, under the first name that routes to it
     [("lightdom", ["prod"]), ("lightdom:1", []), ("lightdom:2", [])]),
])
def test_v1_models_lists_each_served_model_once_with_its_aliases(routes, listing):
    from dsft.serve.router import Route, Table, Variant

    table = Table({name: Route(name, tuple(Variant("live" if k == 0 else "canary", key, 1.0)
                                           for k, key in enumerate(keys)), salt="deployment-1" if name in ("prod", "lightdom") else "")
                   for name, keys in routes.items()})
    assert table.listing() == listing
