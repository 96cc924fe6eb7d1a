"""Comparisons: deltas, paired bootstrap intervals, regressions."""

from __future__ import annotations

import json

import pytest

from conftest import run_dsft
from dsft.data.conversation import Tool, ToolCall
from dsft.eval.compare import bootstrap_delta, compare
from dsft.eval.tool_metrics import score_calls
from dsft.eval.tooluse import Scores

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


@pytest.mark.slow
def test_cli_compare_base_with_itself(tmp_path, tiny_model):
    run_dsft("data", "generate", "-n", "10", "--seed", "11", "--out", tmp_path / "d.jsonl", check=0)
    out = json.loads(run_dsft("eval", "compare", tiny_model, tiny_model, "--data", tmp_path / "d.jsonl",
                              "--max-new-tokens", "16", "--json", check=0).stdout)
    assert out["metrics"]["tool_name_accuracy"]["delta"] == 0 and out["regressed"] == out["improved"] == []
    assert out["metrics"]["tool_args_exact_match"]["ci95"] == [0.0, 0.0]
