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


def _curves(tmp_path, train, evals, task=(), summary=None):
    """task: (step, exact arguments, tool names) points, as training writes them."""
    lines = [{"step": i + 1, "loss": loss} for i, loss in enumerate(train)]
    for step, value in evals:
        lines[step - 1]["eval_loss"] = value
    for step, exact, names in task:
        lines[step - 1].update(eval_tool_args_exact_match=exact, eval_tool_name_accuracy=names)
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    return fit_verdict(tmp_path, summary=summary)


def _summary(exact, names, no_call=None):
    """What `dsft eval` computed: by_category over 40 single-call rows (and 10 no-call rows)."""
    cats = {"single": {"n": 40, "tool_name_accuracy": names, "tool_args_exact_match": exact}}
    if no_call is not None:
        cats["no_call"] = {"n": 10, "tool_name_accuracy": no_call, "tool_args_exact_match": no_call}
    return {"tool_args_exact_match": exact, "tool_name_accuracy": names, "by_category": cats}


GOOD_LOSS = ([3, 2, 1, .8, .71, .7, .7, .7], [(4, .8), (8, .75)])


def test_fit_verdicts(tmp_path):
    assert _curves(tmp_path, [3, 2, 1, .5, .3, .2, .1, .05], [(2, 2.0), (4, 1.0), (8, 1.5)])["verdict"] == "overfitting"
    assert _curves(tmp_path, [5, 4, 3, 2.5, 2, 1.5, 1.2, 1.0], [(4, 2.5), (8, 1.1)])["verdict"] == "underfitting"
    assert _curves(tmp_path, [3, 2, 1, .8, .71, .7, .7, .7], [(4, .8), (8, .75)])["verdict"] == "good fit"
    assert fit_verdict(tmp_path / "nowhere") is None
    assert fit_verdict(tmp_path / "nowhere", summary=_summary(0.0, 0.0)) is None  # a base model: no curves


# loss curves that say "good fit", and what the evaluation just measured -> verdict
SUMMARIES = [
    (_summary(0.0, 0.96), "underfitting", "exact arguments 0.000"),  # the user's run: names learned, arguments not
    (_summary(0.9, 0.3), "underfitting", "tool names 0.300"),
    (_summary(0.0, 0.96, no_call=1.0), "underfitting", "40 evaluated rows with a call"),  # no-call rows left out
    (_summary(0.49, 0.49), "underfitting", "exact arguments 0.490, tool names 0.490"),
    (_summary(0.5, 0.96), "good fit", "eval loss at or near its minimum"),
    ({"tool_args_exact_match": 1.0, "by_category": {"no_call": {"n": 5, "tool_args_exact_match": 1.0}}},
     "good fit", "eval loss"),  # no row with a call: the loss decides, as for plain text
    (None, "good fit", "eval loss"),
]


@pytest.mark.parametrize("summary,verdict,why", SUMMARIES)
def test_fit_verdict_judges_the_task_metric_just_evaluated(tmp_path, summary, verdict, why):
    out = _curves(tmp_path, *GOOD_LOSS, summary=summary)
    assert out["verdict"] == verdict and why in out["why"]
    if verdict == "underfitting":
        assert out["why"].startswith("not learned:") and "good fit" in out["why"]  # what the curves alone said
        assert any("--time-budget" in x for x in out["suggest"]) and any("--copy-augment" in x for x in out["suggest"])


def test_good_fit_is_impossible_at_zero_exact_arguments_whatever_the_curves(tmp_path):
    curves = [GOOD_LOSS,  # loss: good fit
              ([5, 4, 3, 2.5, 2, 1.5, 1.2, 1.0], [(4, 2.5), (8, 1.1)]),  # loss: underfitting
              ([3, 2, 1, .8, .7, .7, .7, .7], [(4, .8), (8, .75)], [(4, 0.0, 0.9), (8, 0.0, 0.95)])]  # flat at 0
    for curve in curves:
        assert _curves(tmp_path, *curve, summary=_summary(0.0, 0.96))["verdict"] == "underfitting"
    over = _curves(tmp_path, [3, 2, 1, .5, .3, .2, .1, .05], [(2, 2.0), (4, 1.0), (8, 1.5)], summary=_summary(0.0, 0.9))
    assert over["verdict"] == "overfitting" and "exact arguments 0.000 (below 0.5)" in over["why"]


# task-metric curves written during training (step, exact, names) -> verdict, why, best_step
TASK = [
    ([(2, 0.1, 0.5), (4, 0.3, 0.8), (6, 0.5, 0.9), (8, 0.7, 0.95)], "underfitting",
     "exact arguments during training still rose from 0.500 at step 6 to 0.700 at step 8 over the last quarter", None),
    ([(2, 0.3, 0.9), (4, 0.8, 0.95), (6, 0.7, 0.95), (8, 0.6, 0.95)], "overfitting",
     "exact arguments during training fell from its best 0.800 at step 4 to 0.600 at step 8", 4),
    ([(2, 0.5, 0.9), (4, 0.9, 0.97), (6, 0.92, 0.99), (8, 0.91, 0.99)], "good fit",
     "exact arguments during training levelled off at 0.910 (best 0.920 at step 6)", None),
    ([(2, 0.5, 0.9), (4, 0.9, 0.97), (6, 0.9, 0.99), (8, 0.9, 0.99)], "good fit",
     "exact arguments during training levelled off at 0.900 (best 0.900 at step 4)", None),  # earliest best
    ([(2, 0.0, 0.5), (4, 0.0, 0.9), (6, 0.02, 0.95), (8, 0.0, 0.96)], "underfitting",  # flat, but at zero
     "not learned: exact arguments during training levelled off at 0.000 (best 0.020 at step 6), below 0.5", None),
]


@pytest.mark.parametrize("task,verdict,why,best_step", TASK)
def test_fit_verdict_from_task_metric_curves(tmp_path, task, verdict, why, best_step):
    out = _curves(tmp_path, *GOOD_LOSS, task=task)  # the loss curves alone say good fit
    assert (out["verdict"], out["why"], out.get("best_step"), out["metric"]) == (
        verdict, why, best_step, "eval_tool_args_exact_match")
    if verdict != "good fit":
        assert out["loss"]["verdict"] == "good fit"  # what the loss alone said is kept beside


def test_task_curves_outrank_a_rising_eval_loss_and_names_stand_in_without_arguments(tmp_path):
    rising = ([3, 2, 1, .5, .3, .2, .1, .05], [(2, 2.0), (4, 1.0), (8, 1.5)])  # loss alone: overfitting
    out = _curves(tmp_path, *rising, task=[(2, 0.5, 0.9), (4, 0.9, 0.97), (8, 0.9, 0.99)])
    assert out["verdict"] == "good fit" and out["loss"]["verdict"] == "overfitting" and out["loss"]["best_step"] == 4
    lines = [{"step": s, "loss": 1.0, "eval_tool_name_accuracy": v} for s, v in ((1, .2), (2, .4), (3, .6), (4, .9))]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    out = fit_verdict(tmp_path)
    assert (out["verdict"], out["metric"]) == ("underfitting", "eval_tool_name_accuracy")
    assert out["why"] == ("tool names during training still rose from 0.600 at step 3 to 0.900 at step 4 "
                          "over the last quarter")


def test_plain_text_underfitting_suggests_no_tool_flags(tmp_path):
    out = _curves(tmp_path, [5, 4, 3, 2.5, 2, 1.5, 1.2, 1.0], [(4, 2.5), (8, 1.1)])
    assert out["verdict"] == "underfitting" and not any("copy-augment" in x for x in out["suggest"])


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
