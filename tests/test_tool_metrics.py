"""Tool-call metrics on hand-computed cases, BFCL edge cases included."""

from __future__ import annotations

import pytest

from dsft.data.conversation import Tool, ToolCall
from dsft.eval.tool_metrics import aggregate, args_equal, score_calls

MINE = Tool(name="mine", parameters={"type": "object", "properties": {
    "url": {"type": "string"}, "limit": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["url"]})
SEO = Tool(name="seo", parameters={"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]})
TOOLS = [MINE, SEO]


def call(name, **args):
    return ToolCall(id="x", name=name, arguments=args)


REF = [call("mine", url="https://Shop.io", limit=5)]


@pytest.mark.parametrize("label,pred,expect", [
    ("identical", [call("mine", url="https://Shop.io", limit=5)],
     dict(name_match=True, exact=True, bfcl=True, arg_precision=1.0, arg_recall=1.0, schema_valid=True)),
    ("string normalised (case, punctuation)", [call("mine", url="HTTPS://shop.io/", limit=5)],
     dict(exact=False, bfcl=True, arg_precision=1.0)),
    ("optional argument omitted", [call("mine", url="https://shop.io")],
     dict(exact=False, bfcl=True, arg_precision=1.0, arg_recall=0.5)),
    ("missing required argument", [call("mine", limit=5)],
     dict(exact=False, bfcl=False, arg_precision=1.0, arg_recall=0.5, schema_valid=False)),
    ("extra argument", [call("mine", url="https://shop.io", limit=5, tags=["a"])],
     dict(exact=False, bfcl=False, arg_precision=2 / 3, arg_recall=1.0)),
    ("type mismatch gets half credit", [call("mine", url="https://shop.io", limit="5")],
     dict(exact=False, arg_precision=0.75, arg_recall=0.75, schema_valid=False)),
    ("wrong tool", [call("seo", url="https://shop.io")],
     dict(name_match=False, exact=False, arg_precision=0.0, arg_recall=0.0)),
    ("wrong call count", [call("mine", url="https://shop.io", limit=5), call("seo", url="x")],
     dict(call_count_match=False, name_match=False, exact=False, arg_precision=2 / 3, arg_recall=1.0)),
    ("hallucinated tool", [call("scrape", url="https://shop.io")],
     dict(hallucinated=True, schema_valid=False, name_match=False)),
])
def test_single_call_cases(label, pred, expect):
    got = score_calls(pred, REF, TOOLS)
    for key, value in expect.items():
        assert getattr(got, key) == pytest.approx(value), (label, key)


def test_parallel_calls_match_in_any_order():
    ref = [call("mine", url="a.com"), call("seo", url="b.com")]
    got = score_calls([call("seo", url="B.com"), call("mine", url="a.com")], ref, TOOLS)
    assert got.category == "parallel" and got.bfcl and not got.exact and got.arg_f1 == 1.0
    assert score_calls([call("seo", url="b.com"), call("mine", url="a.com")], ref, TOOLS).exact
    half = score_calls([call("seo", url="c.com"), call("mine", url="a.com")], ref, TOOLS)
    assert not half.exact and half.name_match and half.arg_precision == pytest.approx(0.75)


def test_call_when_none_expected_and_irrelevance():
    got = score_calls([call("seo", url="x")], [], TOOLS)
    assert got.category == "no_call" and got.irrelevance_correct is False and not got.exact
    ok = score_calls([], [], TOOLS)
    assert ok.irrelevance_correct is True and ok.exact and ok.arg_f1 == 1.0


def test_unparsed_generation_scores_nothing():
    got = score_calls([], REF, TOOLS, parsed=False)
    assert not (got.parsed or got.name_match or got.exact or got.schema_valid) and got.arg_f1 == 0.0


@pytest.mark.parametrize("names, parsed, name_match", [
    (["mine"], False, True),   # the right tool, arguments broken: counts for tool names only
    (["seo"], False, False),   # the wrong tool, arguments broken
    ([], False, False),        # no structure at all
    (["mine", "mine"], False, False),
])
def test_a_named_call_with_broken_arguments_counts_for_tool_names_only(names, parsed, name_match):
    got = score_calls([], REF, TOOLS, parsed=parsed, names=names)
    assert got.name_match is name_match
    assert not (got.parsed or got.exact or got.bfcl or got.schema_valid or got.call_count_match) and got.arg_f1 == 0.0
    assert score_calls([], [], TOOLS, parsed=False, names=["mine"]).irrelevance_correct is False


def test_aggregate_hand_computed():
    scores = [score_calls([call("mine", url="https://Shop.io", limit=5)], REF, TOOLS),   # exact
              score_calls([call("seo", url="x")], REF, TOOLS),                          # wrong tool
              score_calls([], [], TOOLS),                                               # right abstention
              score_calls([call("seo", url="x")], [], TOOLS)]                           # call when none expected
    agg = aggregate(scores)
    assert agg["n"] == 4 and agg["tool_name_accuracy"] == 0.5 and agg["tool_args_exact_match"] == 0.5
    assert agg["irrelevance_accuracy"] == 0.5 and agg["hallucinated_tool_rate"] == 0.0
    assert agg["by_category"]["multiple"] == {"n": 2, "tool_name_accuracy": 0.5, "tool_args_exact_match": 0.5,
                                              "tool_args_bfcl_match": 0.5}
    assert agg["confusion"] == {"mine -> seo": 1}


def test_args_equal_keeps_bool_and_number_apart():
    schema = {"type": "object", "properties": {"flag": {"type": "boolean"}, "n": {"type": "number"}}}
    assert not args_equal({"flag": 1}, {"flag": True}, schema)
    assert args_equal({"n": 2}, {"n": 2.0}, schema)


def test_score_outputs_made_elsewhere_equals_in_process_scoring(tmp_path, tiny_model):
    """`dsft eval score` on the generations of a model gives the numbers `dsft eval` gives."""
    import json

    from conftest import run_dsft

    from dsft.eval.tooluse import cases, evaluate, load_for_eval
    from dsft.train.trainer import load_conversations

    run_dsft("data", "generate", "-n", "12", "--seed", "9", "--out", tmp_path / "ref.jsonl", check=0)
    convs, _ = load_conversations([str(tmp_path / "ref.jsonl")])
    net, tok = load_for_eval(str(tiny_model))
    scores = evaluate(net, tok, convs, max_new_tokens=24)
    (tmp_path / "pred.jsonl").write_text("\n".join(json.dumps({"text": d["generated"]}) for d in scores.details))
    out = json.loads(run_dsft("eval", "score", tmp_path / "pred.jsonl", tmp_path / "ref.jsonl", "--json",
                              check=0).stdout)
    expected = json.loads(json.dumps(scores.summary()))
    assert expected.pop("perplexity") > 1  # needs the model: only in-process scoring has it
    assert expected.pop("constrained") is True  # how it decoded: only in-process generation knows
    assert out == expected and out["text"]["n"] > 0
    # OpenAI-format predictions: the references' own turns score perfectly
    msgs = []
    for case in cases(convs):
        calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                 for c in case.reference]
        msgs.append({"role": "assistant", "content": case.reference_text, "tool_calls": calls or None})
    (tmp_path / "oracle.jsonl").write_text("\n".join(json.dumps(m) for m in msgs))
    oracle = json.loads(run_dsft("eval", "score", tmp_path / "oracle.jsonl", tmp_path / "ref.jsonl", "--json",
                                 check=0).stdout)
    assert oracle["tool_args_exact_match"] == 1.0 and oracle["parse_rate"] == 1.0
    (tmp_path / "short.jsonl").write_text("\n".join(json.dumps(m) for m in msgs[:-1]))
    proc = run_dsft("eval", "score", tmp_path / "short.jsonl", tmp_path / "ref.jsonl", check=2)
    assert "11 predictions for 12 reference examples" in proc.stderr


def test_text_metrics_hand_computed():
    from dsft.eval.text_metrics import label_scores, text_scores

    out = text_scores(["the cat sat", "hello  world", "x"], ["the cat sat on", "hello world", "y"])
    assert out["n"] == 3 and out["exact_match"] == pytest.approx(1 / 3)
    assert out["rougeL"] == pytest.approx((6 / 7 + 1 + 0) / 3)  # LCS F: 2*(3/3*3/4)/(3/3+3/4) = 6/7
    assert out["bleu"] == 0.0 and 0 < out["chrf"] < 1  # no hypothesis has a 4-gram: corpus BLEU is 0
    same = "the campaign camp_123 extracts product data every day"
    assert text_scores([same], [same])["bleu"] == pytest.approx(1.0)
    # labels: gold a,a,b,b; predicted a,b,b,c -> acc 0.5; F1(a)=2*1*.5/1.5=2/3, F1(b)=2*.5*.5/1=.5
    got = label_scores(["A", "b", "b", "c"], ["a", "a", "b", "b"])
    assert got["label_accuracy"] == 0.5 and got["label_macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert text_scores([], []) == {"n": 0}


@pytest.mark.parametrize("tail, stops", [
    ([7, 8, 9] * 16, True),            # a 3-token loop, 16 times
    ([4] * 16, True),                  # one token over and over
    ([4] * 15, False),                 # not yet 16 times
    (list(range(10, 58)), False),      # 48 distinct tokens
    ([1, 2] * 15 + [3, 1, 2], False),  # broken by one other token
    ([1, 2, 3, 4, 5] * 16, False),     # period 5: longer than it looks for
])
def test_a_looping_continuation_stops_and_only_that_row(tail, stops):
    import torch

    from dsft.eval.tooluse import RepetitionStop

    done = RepetitionStop(prompt_width=2)(torch.tensor([[5, 6, *tail], [5, 6, *range(100, 100 + len(tail))]]))
    assert done.tolist() == [stops, False]


def test_generation_ends_a_looping_row_early(tiny_random_model):
    """In `model.generate`: a loop stops the row before the token budget (an untrained model loops)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.eval.tooluse import generate

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_random_model), AutoTokenizer.from_pretrained(tiny_random_model)
    prompt = tok("aaaa aaaa aaaa aaaa", add_special_tokens=False)["input_ids"]
    text = generate(model, tok, [prompt], max_new_tokens=400)[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.eos_token not in text and len(set(ids)) <= 4 and 16 <= len(ids) <= 32  # cut at the loop, not at EOS
