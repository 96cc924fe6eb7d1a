"""Evaluation throughput of the tiny model: batched generation vs one prompt at a time, one run.

    python benchmarks/eval_throughput.py [--examples 64] [--batch 8]

Trains nothing: a freshly built tiny DeepSeek-V3 model generates greedily (up to 64 new tokens)
for generated LightDom examples through `dsft.eval.tooluse.evaluate`. Prints examples/s for both
settings and, last, one JSON object with `batched_examples_per_s`, `single_examples_per_s`, `speedup`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    from dsft.data.generate import generate, load_scenarios
    from dsft.data.pipeline import to_conversation
    from dsft.eval.tooluse import evaluate, load_for_eval
    from dsft.model.tiny import TinySpec, build

    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp) / "tiny", TinySpec())
        convs = [to_conversation(r) for r in generate(load_scenarios(), args.examples, seed=21)]
        model, tok = load_for_eval(str(path))
        evaluate(model, tok, convs[:4], max_new_tokens=8)  # warm-up
        rates = {}
        for label, batch in (("batched", args.batch), ("single", 1)):
            started = time.perf_counter()
            scores = evaluate(model, tok, convs, max_new_tokens=64, batch_size=batch)
            rates[label] = scores.summary()["n"] / (time.perf_counter() - started)
            print(f"{label} (batch {batch}): {rates[label]:.1f} examples/s")
    print(json.dumps({"batched_examples_per_s": round(rates["batched"], 2),
                      "single_examples_per_s": round(rates["single"], 2),
                      "speedup": round(rates["batched"] / rates["single"], 2), "examples": args.examples}))


if __name__ == "__main__":
    main()
