"""A stand-in for `vllm serve` that answers instantly: the upstream for serve_overhead.py, so the
benchmark measures dsft's gateway, not a model. Accepts vLLM's CLI flags, serves /health and
/v1/completions (token-id prompts) with a fixed completion."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request

TEXT = "Hello! How can I help you today?<｜end▁of▁sentence｜>"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command")
    ap.add_argument("model")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args, _ = ap.parse_known_args()
    app = FastAPI()

    @app.get("/health")
    def health():
        return {}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        return {"id": "cmpl-echo", "object": "text_completion", "created": 0,
                "choices": [{"index": 0, "text": TEXT, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 9}}

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
