"""Comparisons: deltas, paired bootstrap intervals, per-metric regressions, which side is which."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import run_dsft
from rich.console import Console

from dsft.cli.evaluate import print_comparison
from dsft.data.conversation import Conversation, Message, Tool, ToolCall
from dsft.eval.compare import bootstrap_delta, compare, default_labels, describe, sides_of
from dsft.eval.tool_metrics import score_calls
from dsft.eval.tooluse import Case, Scores

SEO = Tool(name="seo", parameters={"type": "object", "properties": {"url": {"type": "string"}}})
REF = [ToolCall(id="r", name="seo", arguments={"url": "a.com"})]


def scores(pattern: str) -> Scores:
    s = Scores()
    for k, ch in enumerate(pattern):
        pred = REF if ch == "1" else [ToolCall(id="p", name="seo", arguments={"url": "wrong"})]
        s.examples.append(score_calls(pred, REF, [SEO]))
        s.details.append({"generated": f"gen-{ch}-{k}", "content": ""})
    return s


def test_bootstrap_interval_is_paired_and_deterministic():
    assert bootstrap_delta([0.0] * 50, [1.0] * 50) == (1.0, 1.0)
    lo, hi = bootstrap_delta([0, 1] * 25, [1, 1] * 25)
    assert 0.3 < lo < 0.5 < hi < 0.7 and (lo, hi) == bootstrap_delta([0, 1] * 25, [1, 1] * 25)


def test_compare_lists_regressions_and_improvements():
    result = compare(scores("1100"), scores("0111"), ("base", "new"), bootstrap=500)
    m = result.metrics["tool_args_exact_match"]
    assert (m["base"], m["new"], m["delta"]) == (0.5, 0.75, 0.25)
    assert m["ci95"][0] <= 0.25 <= m["ci95"][1]
    assert [e["example"] for e in result.regressed] == [0] and [e["example"] for e in result.improved] == [2, 3]
    assert result.regressed[0] == {"example": 0, "base": "gen-1-0", "new": "gen-0-0"}
    with pytest.raises(ValueError):
        compare(scores("1"), scores("11"))


AUDIT = Tool(name="audit", parameters={"type": "object", "properties": {}})
PROMPT = Conversation(messages=[Message(role="user", content="check a.com")], tools=[SEO, AUDIT])


def _pred(code: str) -> tuple[list[ToolCall], bool]:
    """x: the exact call; n: the right tool, wrong arguments; o: another tool; -: no call (text);
    !: does not parse."""
    return {"x": (REF, True), "n": ([ToolCall(id="p", name="seo", arguments={"url": "b.com"})], True),
            "o": ([ToolCall(id="p", name="audit", arguments={})], True), "-": ([], True), "!": ([], False)}[code]


def scored(rows: str, preds: str) -> Scores:
    """rows: C (the reference calls seo) or T (the reference is a text reply, no call)."""
    s = Scores()
    for k, (row, code) in enumerate(zip(rows, preds)):
        case = Case(PROMPT, REF if row == "C" else [], None if row == "C" else "a.com looks fine")
        calls, parsed = _pred(code)
        s.add(case, calls, parsed, None if calls else "a.com looks fine", f"{code}{k}")
    return s


# (rows, base, run) -> per metric (n, improved, regressed); top-level lists (improved, regressed)
CASES = [
    ("CCCCC", "-----", "nnnnn",  # names rise, arguments stay wrong: the case the user measured
     {"tool_name_accuracy": (5, 5, 0), "tool_args_exact_match": (5, 0, 0), "tool_args_bfcl_match": (5, 0, 0),
      "irrelevance_accuracy": (0, 0, 0)}, ([], [])),
    ("CCCCCTTT", "----n-o-", "nnnn-n--",  # plus no-call rows: one starts calling, one stops, one stays right
     {"tool_name_accuracy": (5, 4, 1), "tool_args_exact_match": (5, 0, 0), "tool_args_bfcl_match": (5, 0, 0),
      "irrelevance_accuracy": (3, 1, 1)}, ([6], [5])),
    ("CCCT", "nxo!", "xnx-",  # exact arguments both ways; an unparsed no-call row becomes right
     {"tool_name_accuracy": (3, 1, 0), "tool_args_exact_match": (3, 2, 1), "tool_args_bfcl_match": (3, 2, 1),
      "irrelevance_accuracy": (1, 1, 0)}, ([0, 2, 3], [1])),
]


@pytest.mark.parametrize("rows,base,run,per_metric,top", CASES)
def test_improved_and_regressed_are_counted_per_metric(rows, base, run, per_metric, top):
    result = compare(scored(rows, base), scored(rows, run), ("base", "run"), bootstrap=200)
    got = {k: (v["n"], v["n_improved"], v["n_regressed"]) for k, v in result.per_metric.items()}
    assert got == per_metric
    assert ([e["example"] for e in result.improved], [e["example"] for e in result.regressed]) == top
    # the top-level (deciding) lists are exact arguments on call rows plus irrelevance on no-call rows
    pm = result.per_metric
    for side in ("improved", "regressed"):
        union = sorted(e["example"] for k in ("tool_args_exact_match", "irrelevance_accuracy") for e in pm[k][side])
        assert union == [e["example"] for e in getattr(result, side)]


def test_per_metric_entries_keep_both_generations_and_right_counts():
    result = compare(scored("CCCCCTTT", "----n-o-"), scored("CCCCCTTT", "nnnn-n--"), ("base", "run"), bootstrap=200)
    names = result.per_metric["tool_name_accuracy"]
    assert names["right"] == {"base": 1, "run": 4} and names["rows"] == "call" and names["name"] == "tool names"
    assert names["improved"][0] == {"example": 0, "base": "-0", "run": "n0"}
    assert names["regressed"] == [{"example": 4, "base": "n4", "run": "-4"}]
    irr = result.per_metric["irrelevance_accuracy"]
    assert irr["right"] == {"base": 2, "run": 2} and irr["rows"] == "no_call"
    assert irr["regressed"] == [{"example": 5, "base": "-5", "run": "n5"}]
    assert irr["improved"] == [{"example": 6, "base": "o6", "run": "-6"}]
    m = result.metrics["irrelevance_accuracy"]  # paired interval over the 3 no-call rows only
    assert (m["base"], m["run"], m["delta"]) == (2 / 3, 2 / 3, 0.0) and m["ci95"][0] <= 0 <= m["ci95"][1]
    d = result.to_dict(keep=1)
    assert d["per_metric"]["tool_name_accuracy"]["n_improved"] == 4
    assert len(d["per_metric"]["tool_name_accuracy"]["improved"]) == 1 and d["labels"] == ["base", "run"]
    with pytest.raises(ValueError):
        compare(scored("C", "x"), scored("C", "x"), ("same", "same"))


def _folder(tmp_path, name, marker=None):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    if marker:
        (folder / marker).write_text("{}")
    return str(folder)


def test_labels_say_which_side_is_the_base_and_which_the_run(tmp_path):
    base = _folder(tmp_path, "models/tiny")
    full = _folder(tmp_path, "runs/first", "config.yaml")
    lora = _folder(tmp_path, "runs/second", "adapter_config.json")
    other = _folder(tmp_path, "elsewhere/first", "config.yaml")
    assert describe(base) == ("base", "base model") and describe(full) == describe(lora) == ("run", "trained")
    assert describe("deepseek-ai/deepseek-coder-1.3b-base") == ("base", "base model")  # a hub id
    table = [((base, full), ("base", "run")), ((full, base), ("run", "base")),
             ((full, lora), ("run first", "run second")), ((full, other), ("A run", "B run")),
             ((base, base), ("A base", "B base"))]
    for (a, b), labels in table:
        assert default_labels(a, b) == labels
    assert sides_of(base, full, ("base", "run")) == {"base": {"side": "A", "path": base, "kind": "base model"},
                                                     "run": {"side": "B", "path": full, "kind": "trained"}}


def _text(result, labels, show=3) -> list[str]:
    console = Console(record=True, width=200, color_system=None)
    print_comparison(result, labels, show=show, console=console)
    return console.export_text().splitlines()


def test_cli_text_names_the_sides_and_counts_per_metric():
    labels = ("base", "run")
    sides = {"base": {"side": "A", "path": ".dsft/models/tiny", "kind": "base model"},
             "run": {"side": "B", "path": "runs/first", "kind": "trained"}}
    result = compare(scored("CCCCCTTT", "----n-o-"), scored("CCCCCTTT", "nnnn-n--"), labels, bootstrap=200,
                     sides=sides)
    lines = _text(result, labels)
    assert lines[0] == "A = base .dsft/models/tiny (base model), B = run runs/first (trained)"
    assert "means over all 8 rows (5 with a call, 3 without); irrelevance_accuracy over the 3 without" in lines
    summary = [x for x in lines if " improved, " in x]
    assert summary == ["tool names (5 rows with a call): 4 improved, 1 regressed (base -> run; right 1 -> 4)",
                       "exact arguments (5 rows with a call): 0 improved, 0 regressed (base -> run; right 0 -> 0)",
                       "BFCL arguments (5 rows with a call): 0 improved, 0 regressed (base -> run; right 0 -> 0)",
                       "irrelevance (3 no-call rows): 1 improved, 1 regressed (base -> run; right 2 -> 2)"]
    regressed = [x for x in lines if x.startswith("regressed")]
    assert regressed == ["regressed #4 (tool names): base: 'n4'", "regressed #5 (irrelevance): base: '-5'"]


def test_cli_text_says_when_a_family_has_no_rows():
    lines = _text(compare(scored("CC", "--"), scored("CC", "n-"), ("base", "run"), bootstrap=100), ("base", "run"))
    assert "means over all 2 rows (2 with a call, 0 without)" in lines and "irrelevance: no no-call rows" in lines
    assert "tool names (2 rows with a call): 1 improved, 0 regressed (base -> run; right 0 -> 1)" in lines


def test_print_comparison_still_takes_the_demo_s_counts_only_shape():
    metrics = {"tool_args_exact_match": {"base": 0.0, "trained": 0.5, "delta": 0.5, "ci95": [0.1, 0.9]}}
    old = SimpleNamespace(metrics=metrics, improved=[None] * 4,
                          regressed=[{"example": 2, "base": '{"ids": [1, 2], "t": "[b]x[/b]"}', "trained": "t"}, None])
    lines = _text(old, ("base", "trained"), show=1)
    assert "4 examples improved, 2 regressed (exact arguments, base -> trained)" in lines
    assert "regressed #2: base: '{\"ids\": [1, 2], \"t\": \"[b]x[/b]\"}'" in lines  # brackets are not markup


@pytest.mark.slow
def test_cli_compare_base_with_itself(tmp_path, tiny_model):
    run_dsft("data", "generate", "-n", "10", "--seed", "11", "--out", tmp_path / "d.jsonl", check=0)
    out = json.loads(run_dsft("eval", "compare", tiny_model, tiny_model, "--data", tmp_path / "d.jsonl",
                              "--max-new-tokens", "16", "--json", check=0).stdout)
    assert out["metrics"]["tool_name_accuracy"]["delta"] == 0 and out["regressed"] == out["improved"] == []
    assert out["metrics"]["tool_args_exact_match"]["ci95"] == [0.0, 0.0]
    assert out["labels"] == ["A base", "B base"] and out["sides"]["A base"]["kind"] == "base model"
    assert all(v["n_improved"] == v["n_regressed"] == 0 for v in out["per_metric"].values())
