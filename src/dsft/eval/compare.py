"""`dsft eval compare A B --data FILE`: two models on the same examples, with the evidence.

Every metric side by side with its delta (B - A); for the per-example metrics a paired bootstrap
95 % interval of the delta (examples resampled with replacement, the same resample for A and B,
a fixed seed); and, per metric, the examples that improved (wrong under A, right under B) and
regressed, each with both generations.

Which rows a per-metric count looks at (each row is counted once per family, never twice):
- rows whose reference makes a call: `tool names` (`name_match`), `exact arguments` (`exact`),
  `BFCL arguments` (`bfcl`);
- rows whose reference makes no call: `irrelevance` (`irrelevance_correct`: no call was made).
  On such a row every call flag reduces to "made no call", so counting it under names or
  arguments as well would count the same change two or three times.

The top-level `improved` / `regressed` lists are those of the deciding metric
(`tool_args_exact_match`, the `exact` flag on every row): exact arguments on call rows plus
irrelevance on no-call rows. Promotion gates read `metrics[...]["delta"]`, `ci95` and these lists.

Sides: `labels` name A and B in every row and entry (default: "base" for a plain model folder,
"run" for a run folder, made distinct when both are the same kind); `sides` says what each is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.eval.tool_metrics import ExampleScore
from dsft.eval.tooluse import Scores

PAIRED = {"tool_name_accuracy": "name_match", "tool_args_exact_match": "exact", "tool_args_bfcl_match": "bfcl",
          "arg_f1": "arg_f1", "parse_rate": "parsed", "schema_validity": "schema_valid",
          "irrelevance_accuracy": "irrelevance_correct"}
DECIDING = "tool_args_exact_match"
# key in `per_metric`: (what people call it, ExampleScore flag, rows counted: "call" or "no_call")
PER_METRIC = {"tool_name_accuracy": ("tool names", "name_match", "call"),
              "tool_args_exact_match": ("exact arguments", "exact", "call"),
              "tool_args_bfcl_match": ("BFCL arguments", "bfcl", "call"),
              "irrelevance_accuracy": ("irrelevance", "irrelevance_correct", "no_call")}


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


def describe(path: str) -> tuple[str, str]:
    """(label, kind) of a model argument: a run folder from `dsft train` (config.yaml or
    adapter_config.json inside) is ("run", "trained"); anything else ("base", "base model")."""
    folder = Path(path)
    if (folder / "adapter_config.json").is_file() or (folder / "config.yaml").is_file():
        return "run", "trained"
    return "base", "base model"


def default_labels(a: str, b: str) -> tuple[str, str]:
    """"base"/"run" from what A and B are; when both are the same kind, the folder names are added
    ("run first", "run second"), or "A run"/"B run" when those are equal too."""
    (la, _), (lb, _) = describe(a), describe(b)
    if la != lb:
        return la, lb
    na, nb = Path(a).name, Path(b).name
    if na and nb and na != nb:
        return f"{la} {na}", f"{lb} {nb}"
    return f"A {la}", f"B {lb}"


def sides_of(a: str, b: str, labels: tuple[str, str]) -> dict[str, dict[str, str]]:
    """label -> {"side": "A"/"B", "path", "kind"}: what `Comparison.sides` holds."""
    return {label: {"side": side, "path": str(path), "kind": describe(str(path))[1]}
            for label, side, path in zip(labels, "AB", (a, b))}


def _counted(e: ExampleScore, rows: str) -> bool:
    no_call = e.irrelevance_correct is not None  # set only when the reference makes no call
    return no_call if rows == "no_call" else not no_call


@dataclass
class Comparison:
    metrics: dict[str, dict[str, Any]]
    regressed: list[dict]  # the deciding metric's (exact flag, every row)
    improved: list[dict]
    per_metric: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: tuple[str, str] = ("A", "B")
    sides: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> {"side", "path", "kind"}

    def to_dict(self, keep: int | None = None) -> dict[str, Any]:
        """JSON form; `keep` caps each example list (the counts stay exact)."""
        def cut(entries):
            return entries if keep is None else entries[:keep]

        per_metric = {k: {**v, "improved": cut(v["improved"]), "regressed": cut(v["regressed"])}
                      for k, v in self.per_metric.items()}
        return {"labels": list(self.labels), "sides": self.sides, "metrics": self.metrics,
                "per_metric": per_metric, "regressed": cut(self.regressed), "improved": cut(self.improved),
                "deciding_metric": DECIDING}


def _per_metric(a: Scores, b: Scores, labels: tuple[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, (name, flag, rows) in PER_METRIC.items():
        block: dict[str, Any] = {"name": name, "flag": flag, "rows": rows, "n": 0,
                                 "right": {labels[0]: 0, labels[1]: 0}, "n_improved": 0, "n_regressed": 0,
                                 "improved": [], "regressed": []}
        for k, (ea, eb) in enumerate(zip(a.examples, b.examples)):
            if not _counted(ea, rows):
                continue
            ra, rb = bool(getattr(ea, flag)), bool(getattr(eb, flag))
            block["n"] += 1
            block["right"][labels[0]] += ra
            block["right"][labels[1]] += rb
            if ra != rb:
                entry = {"example": k, labels[0]: a.details[k]["generated"], labels[1]: b.details[k]["generated"]}
                block["improved" if rb else "regressed"].append(entry)
        block["n_improved"], block["n_regressed"] = len(block["improved"]), len(block["regressed"])
        out[key] = block
    return out


def compare(a: Scores, b: Scores, labels: tuple[str, str] = ("A", "B"), bootstrap: int = 2000,
            sides: dict[str, dict[str, str]] | None = None) -> Comparison:
    if len(a.examples) != len(b.examples):
        raise ValueError("both models must be scored on the same examples")
    if labels[0] == labels[1]:
        raise ValueError(f"the two sides need distinct labels, got {labels[0]!r} twice")
    if any(ea.category != eb.category for ea, eb in zip(a.examples, b.examples)):
        raise ValueError("both models must be scored on the same examples, in the same order")
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
            pairs = [(ea, eb) for ea, eb in zip(a.examples, b.examples)
                     if attr != "irrelevance_correct" or ea.irrelevance_correct is not None]
            xa = [float(getattr(ea, attr)) for ea, _ in pairs]
            xb = [float(getattr(eb, attr)) for _, eb in pairs]
            row["ci95"] = list(bootstrap_delta(xa, xb, bootstrap))
        metrics[key] = row
    regressed, improved = [], []
    for k, (ea, eb) in enumerate(zip(a.examples, b.examples)):
        entry = {"example": k, labels[0]: a.details[k]["generated"], labels[1]: b.details[k]["generated"]}
        if ea.exact and not eb.exact:
            regressed.append(entry)
        elif eb.exact and not ea.exact:
            improved.append(entry)
    return Comparison(metrics, regressed, improved, _per_metric(a, b, labels), tuple(labels),
                      sides or {labels[0]: {"side": "A"}, labels[1]: {"side": "B"}})


def run_compare(a: str, b: str, data: list[str], limit: int | None = None, max_new_tokens: int | None = None,
                labels: tuple[str, str] | None = None) -> Comparison:
    """Load, generate and score both models on the same examples, then compare. Without
    `labels`, they say what each side is (`default_labels`)."""
    from dsft.eval.tooluse import evaluate, load_for_eval
    from dsft.train.trainer import load_conversations

    labels = tuple(labels) if labels else default_labels(a, b)
    sides = sides_of(a, b, labels)
    convs, _ = load_conversations(data)
    scored = []
    for path in (a, b):
        model, tokenizer = load_for_eval(path)
        scored.append(evaluate(model, tokenizer, convs, max_new_tokens=max_new_tokens, limit=limit))
        del model
    return compare(scored[0], scored[1], labels, sides=sides)
