"""Per-example checks, table-driven over hand-made conversations."""

from __future__ import annotations

import json

import pytest

from dsft.data.checks import Limits, SchemaCache, check, compile_tools
from dsft.data.conversation import Conversation

SEO = {"name": "analyze_seo", "parameters": {"type": "object", "properties": {"url": {"type": "string"}},
                                             "required": ["url"]}}
SYS = {"role": "system", "content": "You are a LightDom assistant."}
USER = {"role": "user", "content": "Audit example.com"}


def call(args, name="analyze_seo", id_="c1"):
    return {"role": "assistant", "tool_calls": [{"id": id_, "name": name, "arguments": args}]}


def result(content='{"score": 80}', id_="c1"):
    return {"role": "tool", "tool_call_id": id_, "content": content}


def answer(text="example.com scores 80 out of 100."):
    return {"role": "assistant", "content": text}


def codes_of(messages, tools=(SEO,), tokens=50, **extra):
    conv = Conversation.model_validate({"messages": messages, "tools": list(tools) if tools is not None else None,
                                        "metadata": {"layout": "chat"}, **extra})
    found = []
    validators = compile_tools(conv.tools, lambda c, m: found.append(c), SchemaCache())
    check(conv, lambda c, m: found.append(c), validators, tokens, Limits(8, 1000))
    return found


CASES = [
    ("clean tool use", [SYS, USER, call({"url": "x"}), result(), answer()], []),
    ("call only, no result yet (teaches the call)", [SYS, USER, call({"url": "x"})], []),
    ("schema mismatch", [SYS, USER, call({"url": 3}), result(), answer()], ["arguments_schema_mismatch"]),
    ("missing required", [SYS, USER, call({}), result(), answer()], ["arguments_schema_mismatch"]),
    ("undeclared tool", [SYS, USER, call({"url": "x"}, name="nope"), result(), answer()], ["undeclared_tool"]),
    ("orphan result", [SYS, USER, call({"url": "x"}), result(id_="zz"), answer()],
     ["orphan_tool_result", "unanswered_tool_call"]),
    ("answered twice", [SYS, USER, call({"url": "x"}), result(), result(), answer()], ["orphan_tool_result"]),
    ("unanswered before next assistant", [SYS, USER, call({"url": "x"}), answer()], ["unanswered_tool_call"]),
    ("no assistant", [SYS, USER], ["no_assistant_turn", "ends_without_answer"]),
    ("weight 0 only", [SYS, USER, {**answer(), "weight": 0}], ["no_assistant_turn"]),
    ("weight on user", [SYS, {**USER, "weight": 1}, answer()], ["invalid_field"]),
    ("empty final answer after a tool result", [SYS, USER, call({"url": "x"}), result(), answer("  ")],
     ["missing_content"]),
    ("empty user", [SYS, {"role": "user", "content": "  "}, answer()], ["missing_content"]),
    ("no system", [USER, answer()], ["no_system_message"]),
    ("error glossed over", [SYS, USER, call({"url": "x"}), result('{"success": false, "error": "TIMEOUT"}'),
                            answer("Great news, everything worked perfectly.")], ["tool_error_claimed_success"]),
    ("error acknowledged", [SYS, USER, call({"url": "x"}), result('{"success": false, "error": "TIMEOUT"}'),
                            answer("The audit timed out; I can retry later.")], []),
    ("cut-off reply", [SYS, USER, answer("Here is the code:\n```js\nconst x = 1")], ["truncated_reply"]),
    ("repetition", [SYS, USER, answer("\n".join(["The same line repeated here."] * 4 + ["x" * 120]))],
     ["repetitive_reply"]),
    ("tool result name differs", [SYS, USER, call({"url": "x"}), {**result(), "name": "other"}, answer()],
     ["tool_name_mismatch"]),
]


@pytest.mark.parametrize("label,messages,expected", CASES, ids=[c[0] for c in CASES])
def test_check_table(label, messages, expected):
    assert sorted(codes_of(messages)) == sorted(expected)


def test_tools_not_declared_is_a_warning_once():
    assert codes_of([SYS, USER, call({"url": "x"}), result(), answer()], tools=None) == ["tools_not_declared"]


def test_invalid_schema_and_duplicate_tool_names():
    bad = {"name": "f", "parameters": {"type": "objekt"}}
    assert "invalid_tool_schema" in codes_of([SYS, USER, answer()], tools=[bad])
    assert "duplicate_tool_name" in codes_of([SYS, USER, answer()], tools=[SEO, SEO])


def test_parallel_calls_disabled():
    two = {"role": "assistant", "tool_calls": [{"id": "a", "name": "analyze_seo", "arguments": {"url": "x"}},
                                               {"id": "b", "name": "analyze_seo", "arguments": {"url": "y"}}]}
    found = codes_of([SYS, USER, two, result(id_="a"), result(id_="b"), answer()], parallel_tool_calls=False)
    assert found == ["parallel_calls_disabled"]


def test_length_bounds():
    assert codes_of([SYS, USER, answer()], tokens=3) == ["too_short"]
    assert codes_of([SYS, USER, answer()], tokens=5000) == ["too_long"]


def test_schema_cache_compiles_once():
    cache = SchemaCache()
    first, _ = cache.get(SEO["parameters"])
    again, _ = cache.get({"required": ["url"], "properties": {"url": {"type": "string"}}, "type": "object"})
    assert first is again


@pytest.mark.parametrize("schema, reason", [
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "'strin' is not valid under any of the given schemas"),
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(["}}}, "'([' is not a 'regex'"),
    ({"type": "object", "required": "a"}, "'a' is not of type 'array'"),
    # valid under the meta-schema, refused by the validator's compiler: compiled when checked, so it is named
    ({"type": "object", "properties": {"p": {"$ref": "#/definitions/nope"}}}, "Unresolvable ref: definitions"),
])
def test_an_invalid_schema_is_named_by_jsonschema_after_the_fast_check(schema, reason):
    assert SchemaCache().get(schema) == (None, reason)


def test_checking_a_schema_leaves_it_as_it_was():
    """The meta-schema check is a compiled validator told not to fill in defaults (fastjsonschema's
    default would write `readOnly`, `items`... into the user's schema)."""
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    before = json.dumps(schema)
    cache = SchemaCache()
    validator, reason = cache.get(schema)
    assert json.dumps(schema) == before and reason == "" and validator is not None
    assert cache.accepts(schema, {"n": 2}) and not cache.accepts(schema, {"n": 0}) and not cache.accepts(schema, {})
