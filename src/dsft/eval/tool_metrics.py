"""Tool-call metrics, per example, with the rules of the Berkeley Function Calling Leaderboard.

Definitions (docs/evaluation.md has them with examples):
- call_count_match: as many calls as the reference;
- name_match: the called names equal the reference's as a multiset;
- exact (`tool_args_exact_match`): the predicted calls equal the reference's as a multiset of
  (name, arguments) with arguments compared as plain JSON values (parallel calls in any order);
- bfcl (`tool_args_bfcl_match`): every reference call has a distinct predicted call with the
  same name and equal arguments, and no call is left over. Arguments are equal after BFCL
  normalisation: where the tool's schema says a value is a string it is
  compared case-insensitively with whitespace and punctuation removed; an argument the schema
  marks optional may be omitted by the prediction; an extra argument or a type mismatch ("42"
  for 42) is a miss;
- arg_f1: per matched call, each reference key scores 1 when the predicted value is equal, 0.5
  when the key is there with another value (ToolBench-static's half credit); precision and recall
  divide the score by the predicted and reference key counts; unmatched calls score 0;
- schema_valid: every predicted call names a declared tool and its arguments satisfy its schema;
- hallucinated: some predicted call names a tool the example does not declare;
- irrelevance_correct: (only when the reference makes no call) the prediction makes none either.
Category: no_call, parallel (several reference calls), multiple (one call, several tools to
choose from), single.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dsft.data.checks import SchemaCache
from dsft.data.conversation import Tool, ToolCall

_STRIP = re.compile(r"[\s,./\-_*^'\"!?;:()\[\]{}]+")
_SCHEMAS = SchemaCache()


def _norm(value: Any, schema: dict | None) -> Any:
    """BFCL standardisation of one argument value, guided by its JSON Schema."""
    schema = schema or {}
    kind = schema.get("type")
    if isinstance(value, str) and (kind == "string" or (kind is None and "enum" not in schema)):
        return _STRIP.sub("", value).casefold()
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _norm(v, props.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v, schema.get("items")) for v in value]
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)  # keeps True != 1 and None distinct
    if isinstance(value, int | float):
        return ("number", float(value))
    return value


def args_equal(pred: dict, ref: dict, schema: dict | None) -> bool:
    schema = schema or {}
    props, required = schema.get("properties", {}), set(schema.get("required", []))
    if set(pred) - set(ref):
        return False  # an extra argument
    for key, ref_value in ref.items():
        if key not in pred:
            if key in required or not props:
                return False
            continue  # optional argument omitted
        if _norm(pred[key], props.get(key)) != _norm(ref_value, props.get(key)):
            return False
    return True


def _arg_score(pred: dict, ref: dict, schema: dict | None) -> float:
    props = (schema or {}).get("properties", {})
    score = 0.0
    for key, ref_value in ref.items():
        if key in pred:
            score += 1.0 if _norm(pred[key], props.get(key)) == _norm(ref_value, props.get(key)) else 0.5
    return score


@dataclass
class ExampleScore:
    category: str
    parsed: bool
    call_count_match: bool
    name_match: bool
    exact: bool
    bfcl: bool
    arg_precision: float
    arg_recall: float
    schema_valid: bool
    hallucinated: bool
    irrelevance_correct: bool | None
    confusion: list[tuple[str, str]]  # (expected tool, called tool) for name mismatches in order

    @property
    def arg_f1(self) -> float:
        p, r = self.arg_precision, self.arg_recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _key(call: ToolCall) -> str:
    return call.name + "\0" + json.dumps(call.arguments, sort_keys=True)


def category(reference: list[ToolCall], tools: list[Tool]) -> str:
    if not reference:
        return "no_call"
    if len(reference) > 1:
        return "parallel"
    return "multiple" if len(tools) > 1 else "single"


def score_calls(pred: list[ToolCall], ref: list[ToolCall], tools: list[Tool], parsed: bool = True,
                names: list[str] | None = None) -> ExampleScore:
    """One example's scores. `names`: the tools the reply's structure names, calls whose arguments
    did not parse included (default: those of `pred`); tool-name accuracy is judged on them, so a
    right tool with broken arguments counts there, and only there (parse_rate, the argument
    metrics and schema validity record the failure)."""
    schemas = {t.name: t.parameters for t in tools}
    left = list(range(len(pred)))
    matched_exact = 0
    score = 0.0
    for r in ref:
        same = [i for i in left if pred[i].name == r.name]
        if not same:
            continue
        best = max(same, key=lambda i: (args_equal(pred[i].arguments, r.arguments, schemas.get(r.name)),
                                        _arg_score(pred[i].arguments, r.arguments, schemas.get(r.name))))
        left.remove(best)
        matched_exact += args_equal(pred[best].arguments, r.arguments, schemas.get(r.name))
        score += _arg_score(pred[best].arguments, r.arguments, schemas.get(r.name))
    n_pred_args = sum(len(c.arguments) for c in pred)
    n_ref_args = sum(len(c.arguments) for c in ref)
    if not ref and not pred:
        precision = recall = 1.0
    else:
        precision = score / n_pred_args if n_pred_args else float(not n_ref_args and len(pred) == len(ref))
        recall = score / n_ref_args if n_ref_args else float(not n_pred_args and len(pred) == len(ref))
    names_equal = Counter(c.name for c in pred) == Counter(c.name for c in ref)
    named = [c.name for c in pred] if names is None else names
    name_match = Counter(named) == Counter(c.name for c in ref) and (parsed or bool(named))
    valid = all(c.name in schemas and _SCHEMAS.accepts(schemas[c.name], c.arguments) for c in pred)
    confusion = [(r.name, p.name) for r, p in zip(ref, pred) if r.name != p.name]
    return ExampleScore(
        category=category(ref, tools), parsed=parsed, call_count_match=parsed and len(pred) == len(ref),
        name_match=name_match, exact=parsed and Counter(map(_key, pred)) == Counter(map(_key, ref)),
        bfcl=parsed and names_equal and matched_exact == len(ref) == len(pred),
        arg_precision=precision if parsed else 0.0, arg_recall=recall if parsed else 0.0,
        schema_valid=parsed and valid, hallucinated=any(c.name not in schemas for c in pred) if tools else False,
        irrelevance_correct=(parsed and not pred) if not ref else None, confusion=confusion)


def aggregate(scores: list[ExampleScore]) -> dict[str, Any]:
    """Means over examples; irrelevance accuracy over the no-call examples only."""
    def mean(values):
        values = list(values)
        return sum(values) / len(values) if values else None

    out: dict[str, Any] = {
        "n": len(scores),
        "parse_rate": mean(s.parsed for s in scores),
        "call_count_match": mean(s.call_count_match for s in scores),
        "tool_name_accuracy": mean(s.name_match for s in scores),
        "tool_args_exact_match": mean(s.exact for s in scores),
        "tool_args_bfcl_match": mean(s.bfcl for s in scores),
        "arg_f1": mean(s.arg_f1 for s in scores),
        "schema_validity": mean(s.schema_valid for s in scores),
        "hallucinated_tool_rate": mean(s.hallucinated for s in scores),
        "irrelevance_accuracy": mean(s.irrelevance_correct for s in scores if s.irrelevance_correct is not None),
    }
    out["by_category"] = {
        cat: {"n": len(group), "tool_name_accuracy": mean(s.name_match for s in group),
              "tool_args_exact_match": mean(s.exact for s in group),
              "tool_args_bfcl_match": mean(s.bfcl for s in group)}
        for cat in sorted({s.category for s in scores}) for group in [[s for s in scores if s.category == cat]]}
    out["confusion"] = dict(Counter(f"{a} -> {b}" for s in scores for a, b in s.confusion).most_common())
    return out
