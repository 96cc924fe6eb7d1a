"""The vLLM backend, for GPU machines: dsft starts `vllm serve` and its gateway sits in front.

    vllm serve BASE --host 127.0.0.1 --port P --api-key K
        --enable-lora --lora-modules NAME=ADAPTER ... --max-loras N --max-lora-rank R
        --enable-auto-tool-choice --tool-call-parser deepseek_v3 --chat-template TEMPLATE
        [--gpu-memory-utilization F --max-model-len L --tensor-parallel-size T]

One vLLM process per base model holds all its adapters (multi-LoRA); adapters registered later
are added at run time through vLLM's `/v1/load_lora_adapter` (VLLM_ALLOW_RUNTIME_LORA_UPDATING).
A full finetune gets a process of its own. The gateway renders prompts itself (the same renderer
as training) and sends token ids to vLLM's `/v1/completions`, so the served text matches the
hf backend's and the same parser reads tool calls; vLLM's own OpenAI chat server (with the
DeepSeek tool parser) is also up for clients that talk to it directly.

Tool-call grammars (chat/constrain.py) go to vLLM as `structured_outputs: {"grammar": ...}`, the
field vLLM 0.12 put in place of the removed `guided_*` ones (which it now ignores silently), and
vLLM is started with `--structured-outputs-config.backend guidance` because the grammar is
llguidance's Lark. A grammar that starts after a thinking turn is not sent (vLLM would hold the
thinking to it too); the gateway says so once per process. A named tool_choice without a grammar
keeps its name constraint as `structured_outputs: {"regex": ...}`.

Before a server starts, an adapter is checked against what vLLM applies (`check_adapter`): DoRA and
non-LoRA adapters are refused, and so is LoRA on MLA's `kv_b_proj` (vLLM issue #48974: loaded, never
applied), each with the fix; a rank above `--max-lora-rank` is refused.

What was run where: this module is exercised against a test double of vLLM's CLI and HTTP API
(tests/vllm_double.py) on CPU; the real vLLM needs a CUDA GPU and was not run by the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dsft.errors import UserError
from dsft.serve.backend import Generation, Request, tool_call_stop


@dataclass
class Engine:
    base: str
    proc: subprocess.Popen
    url: str
    key: str
    models: set[str] = field(default_factory=set)


_GRAMMAR_WARNED = False


def _warn_no_grammar() -> None:
    global _GRAMMAR_WARNED
    _GRAMMAR_WARNED = True
    print("dsft serve: the vllm backend decodes tool calls after a thinking turn without their grammar "
          "(chat/constrain.py); the hf backend applies it", file=sys.stderr, flush=True)


def check_adapter(folder: Path, max_lora_rank: int) -> None:
    """Refuse, before a server starts, an adapter vLLM would reject or serve differently from training."""
    from dsft.train.targets import VLLM_UNAPPLIED

    cfg = json.loads((folder / "adapter_config.json").read_text())
    merged = f"export it merged (`dsft export {folder} --out DIR`) and serve DIR, or use --backend hf"
    if cfg.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{folder} is a {cfg.get('peft_type')} adapter; vLLM serves LoRA adapters only", merged)
    if cfg.get("use_dora"):
        raise UserError(f"{folder} is a DoRA adapter, which vLLM does not serve", merged)
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    unapplied = sorted({t.rsplit(".", 1)[-1] for t in targets} & set(VLLM_UNAPPLIED))
    if unapplied:
        raise UserError(f"{folder} adapts {', '.join(unapplied)}, which vLLM loads but never applies "
                        "(vLLM issue #48974): it would serve a different model than you trained",
                        f"{merged}, or train with lora.targets: vllm")
    if cfg.get("target_parameters"):
        raise UserError(f"{folder} adapts fused expert weights (lora.experts), which vLLM's LoRA does not load", merged)
    if int(cfg.get("r") or 0) > max_lora_rank:
        raise UserError(f"{folder} has LoRA rank {cfg['r']}, above vLLM's --max-lora-rank {max_lora_rank}",
                        f"serve with a larger max LoRA rank, or {merged}")


class VLLMBackend:
    def __init__(self, command: str | None = None, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, tensor_parallel: int = 1, max_loras: int = 8,
                 max_lora_rank: int = 64, start_timeout: float = 900):
        self.command = shlex.split(command or os.environ.get("DSFT_VLLM_COMMAND", "vllm"))
        self.gpu_memory_utilization, self.max_model_len = gpu_memory_utilization, max_model_len
        self.tensor_parallel, self.max_loras, self.max_lora_rank = tensor_parallel, max_loras, max_lora_rank
        self.start_timeout = start_timeout
        self._engines: dict[str, Engine] = {}  # base (or full model folder) -> its vLLM process
        self._served: dict[str, tuple[Engine, str]] = {}  # name -> (engine, the model id vLLM knows)
        self._tokenizers: dict[str, Any] = {}
        self._client = httpx.AsyncClient(timeout=None)

    def served(self) -> list[str]:
        return list(self._served)

    def tokenizer(self, model: str):
        return self._tokenizers[model]

    def argv(self, base: str, port: int, key: str, loras: dict[str, str], template: str | None,
             parser: str | None = "deepseek_v3") -> list[str]:
        """`parser`: vLLM's tool parser for the model's format (its family's; none for formats
        without tool calls), so calls vLLM parses itself match what dsft trained."""
        args = [*self.command, "serve", base, "--host", "127.0.0.1", "--port", str(port), "--api-key", key,
                *(["--enable-auto-tool-choice", "--tool-call-parser", parser] if parser else []),
                "--structured-outputs-config.backend", "guidance",  # the tool-call grammars are llguidance's Lark
                "--gpu-memory-utilization", str(self.gpu_memory_utilization),
                "--tensor-parallel-size", str(self.tensor_parallel)]
        if template:
            args += ["--chat-template", template]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        if loras:
            args += ["--enable-lora", "--max-loras", str(self.max_loras), "--max-lora-rank", str(self.max_lora_rank),
                     "--lora-modules", *[f"{n}={p}" for n, p in loras.items()]]
        return args

    async def load(self, name: str, folder: str) -> None:
        from transformers import AutoTokenizer

        path = Path(folder)
        adapter_cfg = path / "adapter_config.json"
        from dsft.chat.detect import of

        self._tokenizers[name] = AutoTokenizer.from_pretrained(folder)
        parser = of(self._tokenizers[name])[0].tool_parser
        template = str(path / "chat_template.jinja") if (path / "chat_template.jinja").exists() else None
        if adapter_cfg.exists():
            check_adapter(path, self.max_lora_rank)
            base = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
            engine = self._engines.get(base)
            if engine is None:
                engine = await self._start(base, {name: folder}, template, parser)
            else:
                r = await self._client.post(f"{engine.url}/v1/load_lora_adapter", headers=_auth(engine),
                                            json={"lora_name": name, "lora_path": folder})
                if r.status_code >= 400:
                    raise RuntimeError(f"vLLM refused adapter {name}: {r.text[:300]}")
            engine.models.add(name)
            self._served[name] = (engine, name)
        else:
            engine = self._engines.get(folder) or await self._start(folder, {}, template, parser)
            engine.models.add(name)
            self._served[name] = (engine, folder)

    async def _start(self, base: str, loras: dict[str, str], template: str | None,
                     parser: str | None = "deepseek_v3") -> Engine:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        key = secrets.token_hex(16)
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        try:
            proc = subprocess.Popen(self.argv(base, port, key, loras, template, parser), env=env,
                                    stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise UserError(f"cannot start {self.command[0]!r}: vLLM is not installed",
                            "pip install vllm on a CUDA machine, or use --backend hf") from None
        engine = Engine(base, proc, f"http://127.0.0.1:{port}", key)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise UserError(f"vllm serve {base} exited with code {proc.returncode}", "see its output above")
            try:
                if (await self._client.get(f"{engine.url}/health", timeout=2)).status_code == 200:
                    self._engines[base] = engine
                    return engine
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        proc.kill()
        raise UserError(f"vllm serve {base} did not become healthy in {self.start_timeout:.0f}s", "see its output")

    def _body(self, request: Request, stream: bool) -> tuple[Engine, dict[str, Any]]:
        engine, model_id = self._served[request.model]
        s = request.sampling
        tok = self._tokenizers[request.model]
        stop_ids, stop = tool_call_stop(tok) if s.stop_at_tool_call else ([], [])
        body = {"model": model_id, "prompt": request.prompt, "max_tokens": s.max_tokens, "temperature": s.temperature,
                "top_p": s.top_p, "skip_special_tokens": False, "spaces_between_special_tokens": False,
                "stop_token_ids": stop_ids, "stream": stream}
        if stop:
            body["stop"] = stop
        if s.seed is not None:
            body["seed"] = s.seed
        if s.grammar and s.grammar_after is None:  # vLLM >= 0.12; the guided_* fields are gone
            body["structured_outputs"] = {"grammar": s.grammar}
        elif s.must_start_with:  # a named tool_choice without a grammar: start with the name
            body["structured_outputs"] = {"regex": re.escape(s.must_start_with) + r"[\s\S]*"}
        if s.grammar and s.grammar_after is not None and not _GRAMMAR_WARNED:
            _warn_no_grammar()
        if stream:
            body["stream_options"] = {"include_usage": True}
        return engine, body

    async def generate(self, request: Request) -> Generation:
        engine, body = self._body(request, False)
        r = await self._client.post(f"{engine.url}/v1/completions", json=body, headers=_auth(engine))
        if r.status_code >= 400:
            raise RuntimeError(f"vLLM answered {r.status_code}: {r.text[:300]}")
        data = r.json()
        choice = data["choices"][0]
        return Generation(choice["text"], data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"],
                          "length" if choice.get("finish_reason") == "length" else "stop")

    async def stream(self, request: Request):
        engine, body = self._body(request, True)
        text, usage, reason = "", {"prompt_tokens": len(request.prompt), "completion_tokens": 0}, "stop"
        async with self._client.stream("POST", f"{engine.url}/v1/completions", json=body,
                                       headers=_auth(engine)) as r:
            if r.status_code >= 400:
                raise RuntimeError(f"vLLM answered {r.status_code}: {(await r.aread())[:300]!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    usage = data["usage"]
                for choice in data.get("choices") or []:
                    if choice.get("text"):
                        text += choice["text"]
                        yield choice["text"]
                    if choice.get("finish_reason") == "length":
                        reason = "length"
        yield Generation(text, usage["prompt_tokens"], usage["completion_tokens"], reason)

    async def ready(self, model: str) -> bool:
        tok = self._tokenizers[model]
        ids = tok.apply_chat_template([{"role": "user", "content": "ping"}], tokenize=True, return_dict=True,
                                      add_generation_prompt=True)["input_ids"]
        from dsft.serve.backend import Sampling

        return (await self.generate(Request(model, list(ids), Sampling(max_tokens=1)))).completion_tokens >= 1

    async def unload(self, name: str) -> None:
        engine, model_id = self._served.pop(name)
        engine.models.discard(name)
        if model_id == name and engine.models:
            await self._client.post(f"{engine.url}/v1/unload_lora_adapter", headers=_auth(engine),
                                    json={"lora_name": name})
        if not engine.models:
            engine.proc.terminate()
            self._engines.pop(engine.base, None)

    async def close(self) -> None:
        for engine in self._engines.values():
            engine.proc.terminate()
        for engine in self._engines.values():
            try:
                engine.proc.wait(30)
            except subprocess.TimeoutExpired:
                engine.proc.kill()
        await self._client.aclose()


def _auth(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {engine.key}"}


if __name__ == "__main__":  # pragma: no cover - `python -m dsft.serve.vllm ARGS` prints the vllm command
    print(shlex.join(VLLMBackend().argv(sys.argv[1], 8000, "KEY", {}, None)))
