"""Latency dsft's gateway adds: the same upstream called directly and through `dsft serve`.

    python benchmarks/serve_overhead.py [--requests 400]

The upstream is benchmarks/echo_vllm.py, a stand-in for `vllm serve` that answers at once, so
the difference is the gateway: request validation, the OpenAI -> Conversation conversion, the
chat-template render and tokenisation, routing (A/B / deployment), the hop to the upstream,
the tool-call parser, metrics and the response. Both paths use one keep-alive HTTP client,
sequential requests, after a warm-up. The last line is one JSON object with `added_p50_ms` and
`added_p95_ms` (goal: at most 3 ms added at p50).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def timed(fn, n: int) -> list[float]:
    for _ in range(20):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    args = ap.parse_args()
    from dsft.model.tiny import TinySpec, build

    work = Path(tempfile.mkdtemp(prefix="dsft-serve-bench-"))
    model = build(work / "tiny", TinySpec())
    echo = Path(__file__).with_name("echo_vllm.py")
    port = free_port()
    env = {**os.environ, "DSFT_HOME": str(work / "home"), "DSFT_VLLM_COMMAND": f"{sys.executable} {echo}"}
    env.pop("DSFT_API_KEY", None)
    gateway = subprocess.Popen([sys.executable, "-m", "dsft", "serve", "-m", str(model), "--no-registry",
                                "--backend", "vllm", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(echo), "serve", str(model), "--port", str(upstream_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait(f"http://127.0.0.1:{port}/ready", gateway)
        wait(f"http://127.0.0.1:{upstream_port}/health", upstream)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model)
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Hello, who are you?"}]
        prompt = list(tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=True)["input_ids"])
        with httpx.Client(timeout=30) as direct, httpx.Client(timeout=30) as via:
            def call_direct():
                r = direct.post(f"http://127.0.0.1:{upstream_port}/v1/completions",
                                json={"model": "tiny", "prompt": prompt, "max_tokens": 16})
                assert r.status_code == 200

            def call_gateway():
                r = via.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                             json={"model": "tiny", "messages": messages, "max_tokens": 16, "user": "bench"})
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]

            d = timed(call_direct, args.requests)
            g = timed(call_gateway, args.requests)
    finally:
        for p in (gateway, upstream):
            p.terminate()
            p.wait(30)
    result = {"requests": args.requests, "direct_p50_ms": round(pct(d, 50), 3), "direct_p95_ms": round(pct(d, 95), 3),
              "gateway_p50_ms": round(pct(g, 50), 3), "gateway_p95_ms": round(pct(g, 95), 3),
              "added_p50_ms": round(pct(g, 50) - pct(d, 50), 3), "added_p95_ms": round(pct(g, 95) - pct(d, 95), 3),
              "added_mean_ms": round(statistics.mean(g) - statistics.mean(d), 3), "goal_p50_ms": 3.0,
              "machine": f"{os.cpu_count()} cores"}
    print(f"direct upstream: p50 {result['direct_p50_ms']:.2f} ms, p95 {result['direct_p95_ms']:.2f} ms")
    print(f"through dsft:    p50 {result['gateway_p50_ms']:.2f} ms, p95 {result['gateway_p95_ms']:.2f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
