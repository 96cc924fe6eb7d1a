"""`dsft eval compare A B --data FILE`: two models on the same examples, with the evidence.

Every metric side by side with its delta; for the per-example metrics a paired bootstrap 95 %
interval of the delta (examples resampled with replacement, the same resample for A and B, a
fixed seed); and the examples that regressed (right under A, wrong under B) and improved, with
both generations. Promotion gates read `delta`, `ci95` and `regressed`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from dsft.eval.tooluse import Scores

PAIRED = {"tool_name_accuracy": "name_match", "tool_args_exact_match": "exact", "tool_args_bfcl_match": "bfcl",
          "arg_f1": "arg_f1", "parse_rate": "parsed", "schema_validity": "schema_valid"}
DECIDING = "tool_args_exact_match"


def bootstrap_delta(a: list[float], b: list[float], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap 95 % interval of mean(b) - mean(a)."""
    n = len(a)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    deltas = []
    for _ in range(samples):
        idx = [rng.randrange(n) for _ in range(n)]
        deltas.append(sum(b[i] - a[i] for i in idx) / n)
    deltas.sort()
    return deltas[int(0.025 * samples)], deltas[int(0.975 * samples) - 1]


@dataclass
class Comparison:
    metrics: dict[str, dict[str, Any]]
    regressed: list[dict]
    improved: list[dict]

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "regressed": self.regressed, "improved": self.improved,
                "deciding_metric": DECIDING}


def compare(a: Scores, b: Scores, labels: tuple[str, str] = ("A", "B"), bootstrap: int = 2000) -> Comparison:
    if len(a.examples) != len(b.examples):
        raise ValueError("both models must be scored on the same examples")
    sa, sb = a.summary(), b.summary()
    metrics: dict[str, dict[str, Any]] = {}
    for key, value in sa.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or key == "n":
            continue
        other = sb.get(key)
        row: dict[str, Any] = {labels[0]: value, labels[1]: other,
                               "delta": None if other is None or value is None else other - value}
        if key in PAIRED:
            attr = PAIRED[key]
            xa = [float(getattr(e, attr)) for e in a.examples]
            xb = [float(getattr(e, attr)) for e in b.examples]
            row["ci95"] = list(bootstrap_delta(xa, xb, bootstrap))
        metrics[key] = row
    regressed, improved = [], []
    for k, (ea, eb) in enumerate(zip(a.examples, b.examples)):
        entry = {"example": k, labels[0]: a.details[k]["generated"], labels[1]: b.details[k]["generated"]}
        if ea.exact and not eb.exact:
            regressed.append(entry)
        elif eb.exact and not ea.exact:
            improved.append(entry)
    return Comparison(metrics, regressed, improved)


def run_compare(a: str, b: str, data: list[str], limit: int | None = None, max_new_tokens: int = 96,
                labels: tuple[str, str] = ("A", "B")) -> Comparison:
    """Load, generate and score both models on the same examples, then compare."""
    from dsft.eval.tooluse import evaluate, load_for_eval
    from dsft.train.trainer import load_conversations

    convs, _ = load_conversations(data)
    scored = []
    for path in (a, b):
        model, tokenizer = load_for_eval(path)
        scored.append(evaluate(model, tokenizer, convs, max_new_tokens=max_new_tokens, limit=limit))
        del model
    return compare(scored[0], scored[1], labels)
