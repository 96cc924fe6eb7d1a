"""Tool-use conversations from tool schemas and slot-filled scenarios (the guide's 6.4, done properly).

The guide's generator replays fixed scenarios verbatim. This one samples: each example picks a
scenario (by weight), a paraphrase and slot values, so N examples cover the space instead of
repeating it; it mixes in error-recovery and out-of-domain examples (guide 5.1.2), and every
example is checked with dsft's own validator before it is returned, so a scenario whose
arguments break a tool's schema fails here, by name, not later in training.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from dsft.data.layouts import load_tools
from dsft.errors import UserError

_SLOT = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def builtin(name: str) -> Path:
    return Path(str(resources.files("dsft.data") / "assets" / name))


@dataclass
class Scenario:
    name: str
    requests: list[str]
    calls: list[dict]
    results: list[Any]
    answers: list[str]
    slots: dict[str, list] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    weight: float = 1.0


@dataclass
class Scenarios:
    system: str
    scenarios: list[Scenario]
    slots: dict[str, list]
    ood_requests: list[str]
    ood_answers: list[str]


def load_scenarios(path: Path | None = None) -> Scenarios:
    path = Path(path) if path else builtin("lightdom_scenarios.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read scenarios {path}: {e.strerror}", "check the --scenarios path") from None
    except yaml.YAMLError as e:
        raise UserError(f"scenarios {path} is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list) or not raw["scenarios"]:
        raise UserError(f"scenarios {path} has no 'scenarios' list", "see the built-in lightdom_scenarios.yaml")
    out = []
    for k, s in enumerate(raw["scenarios"]):
        name = s.get("name", f"scenarios[{k}]") if isinstance(s, dict) else f"scenarios[{k}]"
        try:
            answers = s["answer"]
            out.append(Scenario(name=name, requests=list(s["requests"]), calls=list(s["calls"]),
                                results=list(s.get("results") or [{"success": True}] * len(s["calls"])),
                                answers=[answers] if isinstance(answers, str) else list(answers),
                                slots=dict(s.get("slots") or {}), errors=list(s.get("errors") or []),
                                weight=float(s.get("weight", 1))))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: scenario {name!r} is missing or mistypes {e}",
                            "each scenario needs requests, calls and answer") from None
        if len(out[-1].results) != len(out[-1].calls):
            raise UserError(f"{path}: scenario {name!r} has {len(out[-1].calls)} calls but "
                            f"{len(out[-1].results)} results", "give one result per call")
    ood = raw.get("out_of_domain") or {}
    return Scenarios(system=raw.get("system") or "You are a helpful assistant with access to tools.\n\n{tool_list}",
                     scenarios=out, slots=dict(raw.get("slots") or {}),
                     ood_requests=list(ood.get("requests") or []), ood_answers=list(ood.get("answers") or []))


@dataclass
class HeldOut:
    """Scenarios split so a test set holds what training never saw."""

    train: Scenarios
    new_values: Scenarios  # training's phrasings, held-out values
    new_phrasings: Scenarios  # held-out phrasings and held-out values
    what: dict


def hold_out(spec: Scenarios, share: float = 0.25, seed: int = 0) -> HeldOut:
    """Of every scenario with 3+ paraphrases, `share` of them (at least one) go to the held-out side
    only; of every slot whose values are plain strings or numbers (4+ of them), `share` of the
    values likewise, and of the out-of-domain requests. Structured slot values (a label with the
    key it maps to) stay on both sides: they are a mapping to learn, not a value to copy, so an
    unseen one would not be a fair test."""
    rng = random.Random(seed)
    held_values: dict[str, int] = {}

    def cut(values: list, name: str | None = None) -> tuple[list, list]:
        if len(values) < 4 or not all(isinstance(v, str | int | float) for v in values):
            return values, values
        order = list(values)
        rng.shuffle(order)
        k = min(len(order) - 1, max(1, round(len(order) * share)))  # each side keeps one
        if name:
            held_values[name] = held_values.get(name, 0) + k
        return order[k:], order[:k]

    def slots(pool: dict[str, Any]) -> tuple[dict, dict]:
        pairs = {name: cut(v, name) if isinstance(v, list) else (v, v) for name, v in pool.items()}
        return {k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()}

    shared_train, shared_test = slots(spec.slots)
    train, values, phrasings, n_phrasings = [], [], [], 0
    for s in spec.scenarios:
        seen, unseen = s.requests, s.requests
        if len(s.requests) >= 3:
            order = list(s.requests)
            rng.shuffle(order)
            k = min(len(order) - 1, max(1, round(len(order) * share)))  # each side keeps one
            seen, unseen, n_phrasings = order[k:], order[:k], n_phrasings + k
        own_train, own_test = slots(s.slots)
        train.append(Scenario(**{**s.__dict__, "requests": seen, "slots": own_train}))
        values.append(Scenario(**{**s.__dict__, "requests": seen, "slots": own_test}))
        phrasings.append(Scenario(**{**s.__dict__, "requests": unseen, "slots": own_test}))
    ood_train, ood_test = cut(spec.ood_requests)
    what = {"phrasings": n_phrasings, "values": dict(sorted(held_values.items())),
            "out_of_domain_requests": len(ood_test) if ood_test is not ood_train else 0}

    def side(scenarios: list[Scenario], slots_: dict, ood: list[str]) -> Scenarios:
        return Scenarios(spec.system, scenarios, slots_, ood, spec.ood_answers)

    return HeldOut(side(train, shared_train, ood_train), side(values, shared_test, ood_test),
                   side(phrasings, shared_test, ood_test), what)


def fill(value: Any, slots: dict[str, Any], where: str) -> Any:
    """Substitute {slot} and {slot.key}; a string that is exactly one slot keeps the slot's type."""
    if isinstance(value, str):
        whole = _SLOT.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), slots, where)
        return _SLOT.sub(lambda m: str(_lookup(m.group(1), slots, where)), value)
    if isinstance(value, list):
        return [fill(v, slots, where) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, slots, where) for k, v in value.items()}
    return value


def _lookup(name: str, slots: dict[str, Any], where: str) -> Any:
    head, *rest = name.split(".")
    if head not in slots:
        raise UserError(f"{where}: unknown slot {{{name}}}", f"define '{head}' under slots")
    value = slots[head]
    for key in rest:
        if not isinstance(value, dict) or key not in value:
            raise UserError(f"{where}: slot {{{name}}} has no field '{key}'", f"add '{key}' to the values of '{head}'")
        value = value[key]
    return value


def generate(spec: Scenarios, n: int, *, seed: int = 0, tools: list[dict] | None = None,
             error_ratio: float = 0.15, ood_ratio: float = 0.1) -> list[dict]:
    """N examples in OpenAI chat layout with `tools` declared; unique where the slot space allows."""
    if n < 0 or not 0 <= error_ratio <= 1 or not 0 <= ood_ratio <= 1 or error_ratio + ood_ratio > 1:
        raise UserError("-n must be >= 0 and the ratios in [0, 1] with a sum <= 1", "e.g. --error-ratio 0.15 --ood-ratio 0.1")
    tools = tools if tools is not None else load_tools(builtin("lightdom_tools.json"))
    declared = [{"type": "function", "function": t} for t in tools]
    tool_list = "\n".join(f"- {t['name']}: {t['description']}" for t in tools)
    system = spec.system.replace("{tool_list}", tool_list)
    rng = random.Random(seed)
    weights = [s.weight for s in spec.scenarios]
    examples: list[dict] = []
    seen: set[bytes] = set()
    attempts = 0
    while len(examples) < n and attempts < 50 * max(n, 1):
        attempts += 1
        roll = rng.random()
        if roll < ood_ratio and spec.ood_requests:
            msgs, kind, name = _ood(spec, rng), "out_of_domain", "out_of_domain"
        else:
            scenario = rng.choices(spec.scenarios, weights)[0]
            with_error = roll < ood_ratio + error_ratio and bool(scenario.errors)
            msgs, kind = _tool_use(scenario, spec.slots, rng, with_error)
            name = scenario.name
        key = orjson.dumps(msgs)  # before ids are drawn: ids alone never make an example new
        if key in seen:
            continue
        seen.add(key)
        _draw_call_ids(msgs, rng)
        examples.append({"messages": [{"role": "system", "content": system}, *msgs], "tools": declared,
                         "metadata": {"source": f"dsft-generate:{name}", "kind": kind}})
    _check(examples)
    return examples


def _tool_use(s: Scenario, shared: dict[str, list], rng: random.Random, with_error: bool) -> tuple[list[dict], str]:
    pool = {**shared, **s.slots}
    slots = {k: rng.choice(v) if isinstance(v, list) else v for k, v in pool.items()}
    where = f"scenario {s.name!r}"
    calls = [{"id": f"call_{k}", "type": "function",
              "function": {"name": c["name"],
                           "arguments": orjson.dumps(fill(c.get("arguments", {}), slots, where)).decode()}}
             for k, c in enumerate(s.calls)]
    results = [fill(r, slots, where) for r in s.results]
    answer = fill(rng.choice(s.answers), slots, where)
    kind = "multi_tool" if len(calls) > 1 else "single_tool"
    if with_error:
        failure = rng.choice(s.errors)
        results[0] = fill(failure["result"], slots, where)
        answer, kind = fill(failure["answer"], slots, where), "error_recovery"
    msgs = [{"role": "user", "content": fill(rng.choice(s.requests), slots, where)},
            {"role": "assistant", "content": None, "tool_calls": calls}]
    msgs += [{"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"],
              "content": orjson.dumps(r).decode()} for c, r in zip(calls, results)]
    msgs.append({"role": "assistant", "content": answer})
    return msgs, kind


def _draw_call_ids(msgs: list[dict], rng: random.Random) -> None:
    """Random ids as real APIs give them, so a model never learns that ids are call_0, call_1."""
    ids: dict[str, str] = {}
    for m in msgs:
        for c in m.get("tool_calls") or ():
            ids[c["id"]] = f"call_{rng.getrandbits(40):010x}"
            c["id"] = ids[c["id"]]
        if m["role"] == "tool":
            m["tool_call_id"] = ids[m["tool_call_id"]]


def _ood(spec: Scenarios, rng: random.Random) -> list[dict]:
    answer = rng.choice(spec.ood_answers) if spec.ood_answers else "I can only help with tasks my tools support."
    return [{"role": "user", "content": rng.choice(spec.ood_requests)}, {"role": "assistant", "content": answer}]


def _check(examples: list[dict]) -> None:
    """Refuse to emit data our own validator rejects: a scenario bug is named, not trained on."""
    from dsft.data.pipeline import Options, Scanner
    from dsft.data.sources import Record

    scanner = Scanner(Options())
    for k, ex in enumerate(examples):
        row = scanner.judge(Record("<generated>", k + 1, "", ex))
        if row.rejected:
            first = next(f for f in row.findings if f.severity == "error")
            raise UserError(f"{ex['metadata']['source']}: generated example breaks [{first.code}] {first.message}",
                            "fix that scenario's arguments so they match the tool's schema")
