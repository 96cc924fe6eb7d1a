"""Throughput of `dsft data prepare` against a plain baseline, measured in one run.

    python benchmarks/data_prepare.py [--rows 100000] [--out benchmarks/out]

Makes N mixed examples (tool use from the built-in generator, plain chat, Alpaca,
prompt/completion, ShareGPT, and ~1% broken rows), then times, each in a fresh process on
one core:
  - ours: prepare end to end (read, validate, score, exact dedup, split, write; token
    statistics off, as the issue's goal states);
  - baseline: json.loads + the guide's schema (section 4.2) as a pydantic model per row, no
    scoring, nothing written.
Each side runs `--repeat` times, interleaved, and its fastest run counts (as timeit does): on a
shared VM, noise only ever adds time, and it moved single runs by ±25% here.
Peak memory is each process's high-water RSS (VmHWM); `growth_bytes_per_row` compares a run on a quarter of
the file with the full run, which shows whether memory grows with the file.
The last line is one JSON object: examples_per_s, vs_baseline, peak_mb, and the rest.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import time
from pathlib import Path
from typing import Any


def make_rows(n: int, seed: int = 0) -> list[str]:
    from dsft.data.generate import generate, load_scenarios

    rng = random.Random(seed)
    tool_rows = generate(load_scenarios(), 1500, seed=seed)
    lines = []
    for k in range(n):
        roll = rng.random()
        if roll < 0.50:
            row = json.loads(json.dumps(rng.choice(tool_rows)))
            row["messages"][1]["content"] += f" (request {k})"
        elif roll < 0.70:
            row = {"messages": [{"role": "system", "content": "You are a helpful front-end assistant."},
                                {"role": "user", "content": f"Question {k}: how do I center a div with CSS?"},
                                {"role": "assistant", "content": f"Answer {k}: use display: flex with "
                                 "justify-content: center and align-items: center on the parent element."}]}
        elif roll < 0.85:
            row = {"instruction": f"Explain snippet {k}", "input": "const x = arr.map(fn)",
                   "output": "This creates a new array by applying fn to each element of arr."}
        elif roll < 0.95:
            row = {"prompt": f"### Task {k}: Generate a component\n### Output:",
                   "completion": " export const Button = () => <button>Click</button>"}
        elif roll < 0.99:
            row = {"conversations": [{"from": "human", "value": f"Hi #{k}, what does LightDom do?"},
                                     {"from": "gpt", "value": "It mines structured data from web pages."}]}
        else:
            lines.append('{"messages": [{"role": "user", "content": "cut off' if k % 2 else '{"question": 1}')
            continue
        lines.append(json.dumps(row))
    return lines


def _peak_mb() -> float:
    """This process's high-water RSS (VmHWM): unlike ru_maxrss it is not inherited across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours(path: str, out: str, q: mp.Queue) -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from dsft.data.prepare import prepare

    started = time.perf_counter()
    result = prepare([path], out, token_stats=False, force=True)
    q.put({"seconds": time.perf_counter() - started, "counts": result.report["counts"],
           "peak_mb": _peak_mb()})


def _baseline(path: str, out: str, q: mp.Queue) -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from pydantic import BaseModel, ConfigDict

    class ToolFunction(BaseModel):
        name: str
        arguments: str

    class ToolCall(BaseModel):
        id: str
        type: str
        function: ToolFunction

    class Message(BaseModel):
        role: str
        content: str | None = None
        tool_calls: list[ToolCall] | None = None
        tool_call_id: str | None = None
        name: str | None = None

    class Example(BaseModel):  # the guide's TrainingExample (section 4.2)
        model_config = ConfigDict(extra="allow")
        messages: list[Message] | None = None
        instruction: str | None = None
        input: str | None = None
        output: str | None = None
        prompt: str | None = None
        completion: str | None = None
        metadata: dict[str, Any] | None = None

    started = time.perf_counter()
    ok = bad = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                Example.model_validate(json.loads(line))
                ok += 1
            except ValueError:
                bad += 1
    q.put({"seconds": time.perf_counter() - started, "counts": {"ok": ok, "bad": bad},
           "peak_mb": _peak_mb()})


def _run(target, path: Path, out: Path) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(str(path), str(out), q))
    proc.start()
    result = q.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of baseline then ours; the best of each is kept")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = make_rows(args.rows)
    full, quarter = args.out / "mixed.jsonl", args.out / "mixed_quarter.jsonl"
    full.write_text("\n".join(lines) + "\n", encoding="utf-8")
    quarter.write_text("\n".join(lines[: len(lines) // 4]) + "\n", encoding="utf-8")
    print(f"{len(lines)} rows, {full.stat().st_size / 2**20:.1f} MiB -> {full}")

    base = ours = None
    for k in range(args.repeat):  # interleaved, best of each: a shared VM's noise only ever adds time
        b = _run(_baseline, full, args.out / "unused")
        o = _run(_ours, full, args.out / "dataset")
        print(f"round {k + 1}: baseline {len(lines) / b['seconds']:,.0f} rows/s, dsft {len(lines) / o['seconds']:,.0f} rows/s")
        base = b if base is None or b["seconds"] < base["seconds"] else base
        ours = o if ours is None or o["seconds"] < ours["seconds"] else ours
    print(f"baseline (json.loads + pydantic per row): {len(lines) / base['seconds']:,.0f} rows/s, "
          f"peak {base['peak_mb']:.0f} MB")
    small = _run(_ours, quarter, args.out / "dataset_quarter")
    eps = len(lines) / ours["seconds"]
    growth = (ours["peak_mb"] - small["peak_mb"]) * 2**20 / (len(lines) - len(lines) // 4)
    print(f"dsft prepare (validate+score+dedup+split+write, one core): {eps:,.0f} rows/s, "
          f"peak {ours['peak_mb']:.0f} MB ({small['peak_mb']:.0f} MB on a quarter of the rows: "
          f"{growth:.0f} bytes per extra row)")
    print(f"counts: {ours['counts']}")
    shutil.rmtree(args.out / "dataset_quarter", ignore_errors=True)
    print(json.dumps({"rows": len(lines), "examples_per_s": round(eps), "baseline_examples_per_s":
                      round(len(lines) / base["seconds"]), "vs_baseline": round(eps * base["seconds"] / len(lines), 3),
                      "peak_mb": round(ours["peak_mb"], 1), "baseline_peak_mb": round(base["peak_mb"], 1),
                      "growth_bytes_per_row": round(growth), "machine": f"{os.cpu_count()} cores, one used"}))


if __name__ == "__main__":
    main()
