"""Every input layout becomes the same canonical conversation."""

from __future__ import annotations

import pytest
from conftest import ASSETS

from dsft.data.conversation import Conversation
from dsft.data.layouts import convert, detect
from dsft.data.sources import discover, read_records


def conv_of(record, layout=None):
    problems = []
    got_layout, data = convert(record, lambda c, m: problems.append((c, m)), layout)
    return got_layout, (Conversation.model_validate(data) if data else None), problems


@pytest.mark.parametrize("record,layout", [
    ({"messages": []}, "chat"), ({"conversations": []}, "sharegpt"), ({"instruction": "x", "output": "y"}, "instruction"),
    ({"prompt": "p", "completion": "c"}, "completion"), ({"text": "t"}, "text"), ({"question": "q"}, None)])
def test_detect(record, layout):
    assert detect(record) == layout


def test_instruction_with_system_input_and_history():
    layout, conv, problems = conv_of({"instruction": "Name a unit", "input": "relative", "output": "em",
                                      "system": "You teach CSS.", "history": [["What is CSS?", "Style sheets."]],
                                      "category": "css", "id": 7})
    assert not problems and layout == "instruction"
    assert [(m.role, m.content) for m in conv.messages] == [
        ("system", "You teach CSS."), ("user", "What is CSS?"), ("assistant", "Style sheets."),
        ("user", "Name a unit\nrelative"), ("assistant", "em")]
    assert conv.metadata == {"id": 7, "category": "css", "layout": "instruction"}


def test_completion_and_text():
    _, conv, _ = conv_of({"prompt": "### Task", "completion": " done"})
    assert [(m.role, m.content) for m in conv.messages] == [("user", "### Task"), ("assistant", " done")]
    _, conv, _ = conv_of({"text": "raw text"})
    assert [(m.role, m.content) for m in conv.messages] == [("assistant", "raw text")]
    assert conv.metadata["layout"] == "text"


def test_openai_tool_calls_arguments_become_dicts():
    _, conv, problems = conv_of({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"k\": [1, 2]}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "ok"}, {"role": "assistant", "content": "done", "weight": 1}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "parallel_tool_calls": True})
    assert not problems
    assert conv.messages[1].tool_calls[0].arguments == {"k": [1, 2]}
    assert conv.tools[0].name == "f" and conv.parallel_tool_calls is True
    assert conv.messages[3].weight == 1


def test_legacy_functions_and_content_parts():
    rec = next(read_records(discover([ASSETS / "layouts" / "legacy_functions.jsonl"])))
    _, conv, problems = conv_of(rec.data)
    assert not problems
    call = conv.messages[1].tool_calls[0]
    assert (call.name, call.arguments) == ("analyze_seo", {"url": "https://example.com"})
    assert conv.messages[2].role == "tool" and conv.messages[2].tool_call_id == call.id
    assert conv.messages[3].content == "It scores 90/100."
    assert conv.tool_names() == ["analyze_seo"] and conv.parallel_tool_calls is False


def test_sharegpt_parallel_calls_observations_and_tools_string():
    rec = next(read_records(discover([ASSETS / "layouts" / "sharegpt.json"])))
    _, conv, problems = conv_of(rec.data)
    assert not problems
    roles = [m.role for m in conv.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]
    calls = conv.messages[2].tool_calls
    assert [c.name for c in calls] == ["mineAttribute", "analyze_seo"]
    assert [m.tool_call_id for m in conv.messages[3:5]] == [c.id for c in calls]
    assert conv.tool_names() == ["mineAttribute", "analyze_seo"]


def test_image_parts_are_refused_by_name():
    _, _, problems = conv_of({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})
    assert problems[0][0] == "unsupported_content" and "messages[0].content[0]" in problems[0][1]


def test_forced_format_names_the_missing_key():
    layout, conv, problems = conv_of({"text": "x"}, layout="instruction")
    assert conv is None and problems == [("layout_mismatch", "--format instruction needs instruction")]


def test_to_openai_round_trip():
    _, conv, _ = conv_of({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"k\": 1}"}}]},
        {"role": "tool", "tool_call_id": "a", "name": "f", "content": "ok"}]})
    _, again, _ = conv_of(conv.to_openai())
    assert again.messages == conv.messages
