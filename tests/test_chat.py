"""The renderer, its mask, and the parser that inverts it."""

from __future__ import annotations

import itertools

import pytest

from dsft.chat.parse import parse_assistant
from dsft.chat.render import RenderError, render, render_prompt, show
from dsft.data.conversation import Conversation
from dsft.data.generate import builtin, generate, load_scenarios
from dsft.data.pipeline import Options, Scanner, to_conversation
from dsft.data.sources import discover, read_records

TOOL_USE = Conversation.model_validate({
    "messages": [
        {"role": "system", "content": "You are a LightDom assistant."},
        {"role": "user", "content": "Audit example.com and shop.io"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "name": "analyze_seo", "arguments": {"url": "https://example.com"}},
            {"id": "b", "name": "analyze_seo", "arguments": {"url": "https://shop.io"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "{\"score\": 80}"},
        {"role": "tool", "tool_call_id": "b", "content": "{\"score\": 65}"},
        {"role": "assistant", "content": "example.com scores 80, shop.io 65."}],
    "tools": [{"name": "analyze_seo", "description": "SEO score",
               "parameters": {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}}]})

GOLDEN = (
    "<｜begin▁of▁sentence｜>You are a LightDom assistant.\n\n## Tools\nYou can call these functions:\n"
    '{"name":"analyze_seo","description":"SEO score","parameters":{"type":"object","properties":'
    '{"url":{"type":"string"}},"required":["url"]}}'
    "<｜User｜>Audit example.com and shop.io<｜Assistant｜>"
    "«<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>analyze_seo\n```json\n"
    '{"url":"https://example.com"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>analyze_seo\n'
    '```json\n{"url":"https://shop.io"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>»'
    '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{"score": 80}<｜tool▁output▁end｜>\n'
    '<｜tool▁output▁begin｜>{"score": 65}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>'
    "«example.com scores 80, shop.io 65.<｜end▁of▁sentence｜>»")


def test_golden_tool_use_rendering_and_mask(tiny_tokenizer):
    rendered = render(TOOL_USE, tiny_tokenizer)
    assert show(rendered, tiny_tokenizer) == GOLDEN
    assert tiny_tokenizer.decode(rendered.ids) == GOLDEN.replace("«", "").replace("»", "")
    assert rendered.ids[-1] == tiny_tokenizer.eos_token_id and rendered.mask[-1] == 1


def test_pad_is_distinct_from_eos(tiny_tokenizer):
    assert tiny_tokenizer.pad_token_id not in (None, tiny_tokenizer.eos_token_id)


def test_prompt_is_a_prefix_of_the_training_text(tiny_tokenizer):
    """Train/serve parity: the prompt for a turn is exactly the rendered text before it."""
    full = render(TOOL_USE, tiny_tokenizer)
    for cut in (2, 5):
        prefix = Conversation.model_validate({**TOOL_USE.model_dump(), "messages": TOOL_USE.model_dump()["messages"][:cut]})
        prompt = render_prompt(prefix, tiny_tokenizer)
        assert full.ids[:len(prompt)] == prompt
        assert full.mask[len(prompt)] == 1 and full.mask[len(prompt) - 1] == 0


def test_weight_zero_turn_is_context_only(tiny_tokenizer):
    conv = Conversation.model_validate({"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "bad answer", "weight": 0},
        {"role": "user", "content": "again"}, {"role": "assistant", "content": "good answer"}]})
    marked = show(render(conv, tiny_tokenizer), tiny_tokenizer)
    assert "«good answer<｜end▁of▁sentence｜>»" in marked and "«bad" not in marked


def test_truncation_that_leaves_nothing_supervised_is_refused(tiny_tokenizer):
    with pytest.raises(RenderError, match="after truncation to 20 tokens"):
        render(TOOL_USE, tiny_tokenizer, max_length=20)


def test_plain_text_layout_is_trained_whole(tiny_tokenizer):
    conv = Conversation.model_validate({"messages": [{"role": "assistant", "content": "raw text"}],
                                        "metadata": {"layout": "text"}})
    r = render(conv, tiny_tokenizer)
    assert r.ids[0] == tiny_tokenizer.bos_token_id and r.ids[-1] == tiny_tokenizer.eos_token_id
    assert r.mask == [0] + [1] * (len(r.ids) - 1)


def _conversations():
    files = discover([builtin("samples")])
    rows = [r for r in Scanner(Options()).scan(read_records(files)) if not r.rejected]
    generated = [to_conversation(g) for g in generate(load_scenarios(), 60, seed=3)]
    return [r.conv for r in rows if r.conv.metadata.get("layout") != "text"] + generated + [TOOL_USE]


def test_render_then_parse_round_trips_every_trained_turn(tiny_tokenizer):
    checked = 0
    for conv in _conversations():
        r = render(conv, tiny_tokenizer)
        spans = [[i for i, _ in group] for m, group in itertools.groupby(zip(r.ids, r.mask), key=lambda x: x[1]) if m]
        turns = [m for m in conv.messages if m.trained]
        assert len(spans) == len(turns)
        for ids, turn in zip(spans, turns):
            parsed = parse_assistant(tiny_tokenizer.decode(ids))
            assert parsed.ok, parsed.error
            assert parsed.content == (turn.content or None)
            assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in turn.tool_calls or ()]
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("text,ok,calls,names", [
    ("plain answer<｜end▁of▁sentence｜>", True, [], []),
    ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\":1}\n```<｜tool▁call▁end｜>"
     "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>", True, [("f", {"a": 1})], ["f"]),
    ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>g<｜tool▁sep｜>{\"b\": [2]}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
     True, [("g", {"b": [2]})], ["g"]),  # V3.1 layout
    ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\":\n```<｜tool▁call▁end｜>", False, [],
     ["f"]),  # the arguments do not parse; the structure still names the tool
    ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\":1}\n```<｜tool▁call▁end｜>",
     False, [("f", {"a": 1})], ["f"]),  # never closed
    ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>createWorkflow\n```json\n{\"url\":\"acme-priceprice",
     False, [], ["createWorkflow"]),  # cut off by max_tokens inside a value (a looping copy)
    ("<｜tool▁calls▁begin｜>garbage", False, [], []),
])
def test_parser_cases(text, ok, calls, names):
    parsed = parse_assistant(text)
    assert parsed.ok is ok and [(c.name, c.arguments) for c in parsed.tool_calls] == calls
    assert ok or parsed.error
    assert parsed.names == names


def test_cli_chat_render_and_model_tiny(tmp_path, tiny_model):
    from conftest import run_dsft

    proc = run_dsft("chat", "render", builtin("samples") / "guide_examples.jsonl", "--model", tiny_model, "-n", "2",
                    check=0)
    assert proc.stdout.count("«") >= 2 and "trained" in proc.stdout
    proc = run_dsft("chat", "render", builtin("samples") / "guide_examples.jsonl", "--model", tmp_path / "none",
                    check=2)
    assert "no such folder" in proc.stderr
    run_dsft("model", "tiny", "--arch", "gpt2", check=2)


def test_the_format_is_told_and_recorded(tiny_tokenizer):
    """The tiny model records its family; a tokenizer with DeepSeek's chat tokens and no record speaks
    V3's layout; one with neither is refused with the families listed."""
    import copy

    from dsft.chat.detect import detect, of
    from dsft.errors import UserError

    assert of(tiny_tokenizer)[0].name == "deepseek_v3" and tiny_tokenizer.init_kwargs["chat_family"] == "deepseek_v3"
    tok = copy.deepcopy(tiny_tokenizer)
    tok.init_kwargs.pop("chat_family")
    tok.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert detect(tok).name == "deepseek_v3"
    assert detect(tok, override="deepseek_v31").name == "deepseek_v31"
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")))
    plain.chat_template = tok.chat_template
    with pytest.raises(UserError, match="cannot tell which chat format some/model speaks"):
        detect(plain, "some/model")
