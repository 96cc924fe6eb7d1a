"""Repetition, fit verdicts, code execution and pass@k on hand-made cases."""

from __future__ import annotations

import json

import pytest

from dsft.eval.code_exec import extract_code, pass_at_k, passes
from dsft.eval.diagnostics import fit_verdict, repetition


def test_repetition_hand_computed():
    out = repetition(["a b a b", "a b a b", "c d"])
    # words: a b a b | a b a b | c d -> 10 unigrams, 4 distinct; bigrams: 3+3+1 = 7, distinct {ab, ba, cd} = 3
    assert out["distinct_1"] == pytest.approx(4 / 10) and out["distinct_2"] == pytest.approx(3 / 7)
    assert out["most_common_share"] == pytest.approx(2 / 3) and out["repeated_4gram_rate"] == 0
    assert repetition(["x y z w " * 3])["repeated_4gram_rate"] == 1


def _curves(tmp_path, train, evals):
    lines = [{"step": i + 1, "loss": loss} for i, loss in enumerate(train)]
    for step, value in evals:
        lines[step - 1]["eval_loss"] = value
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    return fit_verdict(tmp_path)


def test_fit_verdicts(tmp_path):
    assert _curves(tmp_path, [3, 2, 1, .5, .3, .2, .1, .05], [(2, 2.0), (4, 1.0), (8, 1.5)])["verdict"] == "overfitting"
    assert _curves(tmp_path, [5, 4, 3, 2.5, 2, 1.5, 1.2, 1.0], [(4, 2.5), (8, 1.1)])["verdict"] == "underfitting"
    assert _curves(tmp_path, [3, 2, 1, .8, .71, .7, .7, .7], [(4, .8), (8, .75)])["verdict"] == "good fit"
    assert fit_verdict(tmp_path / "nowhere") is None


def test_code_runs_isolated_with_tests_and_no_network():
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    assert extract_code(good).startswith("def add") and passes(extract_code(good), "assert add(2, 3) == 5")
    assert not passes("def add(a, b):\n    return a - b", "assert add(2, 3) == 5")
    assert not passes("while True:\n    pass", "", timeout=1)
    assert not passes("import socket\nsocket.create_connection(('127.0.0.1', 5432))", "")


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0 and pass_at_k(10, 10, 5) == 1
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)


@pytest.mark.slow
def test_eval_report_forgetting_fit_and_model_card(tmp_path, tiny_model):
    from conftest import run_dsft

    run_dsft("data", "generate", "-n", "30", "--seed", "12", "--out", tmp_path / "d.jsonl", check=0)
    (tmp_path / "general.jsonl").write_text("\n".join(json.dumps({"text": f"Plain text number {k} about web pages."})
                                                    for k in range(6)))
    (tmp_path / "cfg.yaml").write_text("training: {log_every: 1, eval_every: 5}\n")
    run_dsft("train", tmp_path / "cfg.yaml", "--model", tiny_model, "--train", tmp_path / "d.jsonl",
             "--out", tmp_path / "run", "--epochs", "2", check=0)
    out = json.loads(run_dsft("eval", "--model", tmp_path / "run", "--data", tmp_path / "d.jsonl", "--limit", "8",
                              "--max-new-tokens", "24", "--reference-data", tmp_path / "general.jsonl",
                              "--report", tmp_path / "rep", "--json", check=0).stdout)
    f = out["forgetting"]
    assert f["base"] == str(tiny_model) and f["perplexity_before"] > 0 and f["perplexity_after"] > 0
    assert out["diagnostics"]["fit"]["verdict"] in ("overfitting", "underfitting", "good fit")
    assert 0 <= out["diagnostics"]["repetition"]["distinct_1"] <= 1
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["n"] == 8
    assert (tmp_path / "rep" / "by_category.png").exists() and "| tool_name_accuracy |" in (tmp_path / "rep" / "report.md").read_text()
    assert "## Evaluation" in (tmp_path / "run" / "README.md").read_text()


def test_code_examples_get_pass_at_1(tmp_path):
    from conftest import run_dsft

    refs = [{"messages": [{"role": "user", "content": f"Write add{k}"}, {"role": "assistant", "content": "..."}],
             "metadata": {"id": f"c{k}", "tests": f"assert add(2, {k}) == {2 + k}"}} for k in range(4)]
    (tmp_path / "refs.jsonl").write_text("\n".join(json.dumps(r) for r in refs))
    preds = [{"id": f"c{k}", "role": "assistant",
              "content": "```python\ndef add(a, b):\n    return a " + ("+" if k < 3 else "-") + " b\n```"}
             for k in range(4)]
    (tmp_path / "preds.jsonl").write_text("\n".join(json.dumps(p) for p in preds))
    out = json.loads(run_dsft("eval", "score", tmp_path / "preds.jsonl", tmp_path / "refs.jsonl", "--json",
                              check=0).stdout)
    assert out["code"] == {"n": 4, "pass@1": 0.75}


def test_sampled_pass_at_k_runs_the_tests(tiny_model):
    from dsft.data.conversation import Conversation
    from dsft.eval.tooluse import evaluate, load_for_eval

    conv = Conversation.model_validate({"messages": [{"role": "user", "content": "Write add"},
                                                     {"role": "assistant", "content": "def add(a, b): return a + b"}],
                                        "metadata": {"tests": "assert add(1, 2) == 3"}})
    model, tok = load_for_eval(str(tiny_model))
    out = evaluate(model, tok, [conv], max_new_tokens=8, samples=5).summary()
    sampled = out["code_sampled"]
    assert sampled["n"] == 1 and sampled["samples"] == 5 and set(sampled) >= {"pass@1", "pass@5"}
    assert sampled["pass@1"] == 0.0 and out["code"] == {"n": 1, "pass@1": 0.0}  # a random model writes no add()
