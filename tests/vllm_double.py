"""A test double of `vllm serve`: its CLI flags and the HTTP endpoints dsft's vLLM backend uses
(/health, /v1/models, /v1/completions with token-id prompts and streaming, runtime LoRA loading),
answered by dsft's own hf backend on CPU. It records its command line and every completion body
for the test to check.

It follows vLLM's current API (read in vllm-project/vllm: vllm/entrypoints/openai/.../protocol.py
CompletionRequest and vllm/sampling_params.py StructuredOutputsParams): constraints come as
`structured_outputs` with exactly one of json/regex/choice/grammar; the `guided_*` fields were
removed in v0.12 (PR #29326) and real vLLM now ignores them silently, so the double refuses them
(400) to make a regression loud. A `grammar` needs the guidance backend
(`--structured-outputs-config.backend guidance`): xgrammar would not parse llguidance's Lark.

    python tests/vllm_double.py serve BASE --port P --api-key K [--enable-lora --lora-modules N=PATH ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def main() -> None:
    with open(os.environ["VLLM_DOUBLE_LOG"], "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\n")
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["serve"])
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--enable-lora", action="store_true")
    ap.add_argument("--lora-modules", nargs="*", default=[])
    ap.add_argument("--max-loras", type=int)
    ap.add_argument("--max-lora-rank", type=int)
    ap.add_argument("--enable-auto-tool-choice", action="store_true")
    ap.add_argument("--tool-call-parser", required=True)
    ap.add_argument("--chat-template")
    ap.add_argument("--gpu-memory-utilization", type=float)
    ap.add_argument("--tensor-parallel-size", type=int)
    ap.add_argument("--max-model-len", type=int)
    ap.add_argument("--structured-outputs-config.backend", dest="so_backend", default="auto")
    args = ap.parse_args()
    assert os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING") == "True"

    from dsft.serve.backend import Request as GenRequest
    from dsft.serve.backend import Sampling
    from dsft.serve.hf import HFBackend

    backend = HFBackend()
    app = FastAPI()
    loras = dict(m.split("=", 1) for m in args.lora_modules)

    @app.on_event("startup")
    async def load() -> None:
        if args.enable_lora:
            for name, path in loras.items():
                await backend.load(name, path)
        else:
            await backend.load(args.model, args.model)

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {args.api_key}"

    @app.get("/health")
    def health():
        return {}

    @app.post("/v1/load_lora_adapter")
    async def load_lora(request: Request):
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        await backend.load(body["lora_name"], body["lora_path"])
        return {"ok": True}

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(request: Request):
        body = await request.json()
        await backend.unload(body["lora_name"])
        return {"ok": True}

    @app.post("/v1/completions")
    async def completions(request: Request):
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        with open(os.environ["VLLM_DOUBLE_LOG"] + ".bodies", "a") as f:
            f.write(json.dumps(body) + "\n")
        assert body["skip_special_tokens"] is False and isinstance(body["prompt"], list)
        removed = sorted(k for k in body if k.startswith("guided_"))
        if removed:
            return JSONResponse({"error": f"{removed} were removed in vLLM 0.12: use structured_outputs"},
                                status_code=400)
        constraint = body.get("structured_outputs") or {}
        kinds = [k for k in ("json", "regex", "choice", "grammar") if constraint.get(k) is not None]
        if len(kinds) > 1:
            return JSONResponse({"error": "one kind of structured outputs constraint"}, status_code=400)
        if "grammar" in kinds and args.so_backend != "guidance":
            return JSONResponse({"error": "grammar error: not an EBNF grammar (the backend is xgrammar)"},
                                status_code=400)
        start = None
        if "regex" in kinds:  # the form dsft sends: an escaped prefix, then anything
            pattern = constraint["regex"]
            assert pattern.endswith(r"[\s\S]*"), pattern
            start = re.sub(r"\\(.)", r"\1", pattern.removesuffix(r"[\s\S]*"))
        sampling = Sampling(max_tokens=body["max_tokens"], temperature=body["temperature"], top_p=body["top_p"],
                            seed=body.get("seed"), stop_at_tool_call=bool(body.get("stop_token_ids")),
                            must_start_with=start, grammar=constraint.get("grammar"))
        req = GenRequest(body["model"], body["prompt"], sampling)
        if not body.get("stream"):
            gen = await backend.generate(req)
            return {"id": "cmpl-double", "object": "text_completion", "created": int(time.time()),
                    "choices": [{"index": 0, "text": gen.text, "finish_reason": gen.finish_reason}],
                    "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens}}

        async def events():
            async for item in backend.stream(req):
                if isinstance(item, str):
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'text': item, 'finish_reason': None}]})}\n\n"
                else:
                    done = {"choices": [{"index": 0, "text": "", "finish_reason": item.finish_reason}],
                            "usage": {"prompt_tokens": item.prompt_tokens, "completion_tokens": item.completion_tokens}}
                    yield f"data: {json.dumps(done)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
