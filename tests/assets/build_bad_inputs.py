"""Writes tests/assets/bad/*: one file per bad-input kind, the bad record between two good ones.

Run it again after changing a case: `python tests/assets/build_bad_inputs.py`. The table
`CASES` (file -> code, line of the bad record) is what tests/test_bad_inputs.py asserts.
"""

import json
from pathlib import Path

HERE = Path(__file__).parent / "bad"
SEO = {"type": "function", "function": {"name": "analyze_seo", "description": "SEO score",
                                        "parameters": {"type": "object", "properties": {"url": {"type": "string"}},
                                                       "required": ["url"]}}}


def good(k: int) -> dict:
    return {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": f"Question number {k}: what is a CSS selector?"},
                         {"role": "assistant", "content": f"Answer {k}: a pattern that selects HTML elements."}]}


def tool_conv(call_args, name="analyze_seo", tools=(SEO,), result_id="c1", extra=()):
    msgs = [{"role": "system", "content": "You are a LightDom assistant."},
            {"role": "user", "content": "Audit example.com please"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": name, "arguments": call_args}}]},
            {"role": "tool", "tool_call_id": result_id, "name": name, "content": "{\"score\": 80}"},
            {"role": "assistant", "content": "example.com scores 80 out of 100."}, *extra]
    row = {"messages": msgs}
    if tools is not None:
        row["tools"] = list(tools)
    return row


def chat(*msgs):
    return {"messages": list(msgs)}


S = {"role": "system", "content": "You are a helpful assistant."}
U = {"role": "user", "content": "Tell me about selectors in CSS"}
A = {"role": "assistant", "content": "Selectors pick the elements a rule styles."}

# file -> (bad record as JSON text or bytes, expected code)
CASES = {
    "invalid_json.jsonl": (b'{"messages": [{"role": "user", "content": "hi"}]]}', "invalid_json"),
    "truncated_record.jsonl": (b'{"messages": [{"role": "user", "content": "hi"}', "truncated_record"),
    "not_an_object.jsonl": (b'[1, 2, 3]', "not_an_object"),
    "not_utf8.jsonl": (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "not_utf8"),
    "unknown_layout.jsonl": ({"question": "q", "answer": "a"}, "unknown_layout"),
    "empty_messages.jsonl": ({"messages": []}, "empty_messages"),
    "unknown_role.jsonl": (chat(S, {"role": "customer", "content": "hi"}, A), "unknown_role"),
    "missing_content.jsonl": (chat(S, {"role": "user", "content": None}, A), "missing_content"),
    "no_assistant_turn.jsonl": (chat(S, U, {**A, "weight": 0}), "no_assistant_turn"),
    "invalid_arguments_json.jsonl": (tool_conv('{"url": "example.com"'), "invalid_arguments_json"),
    "arguments_schema_mismatch.jsonl": (tool_conv('{"url": 42}'), "arguments_schema_mismatch"),
    "undeclared_tool.jsonl": (tool_conv('{"url": "x"}', name="scrape"), "undeclared_tool"),
    "orphan_tool_result.jsonl": (tool_conv('{"url": "x"}', result_id="c7"), "orphan_tool_result"),
    "unanswered_tool_call.jsonl": (chat(S, U, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "analyze_seo", "arguments": "{\"url\": \"x\"}"}}]}, A)
        | {"tools": [SEO]}, "unanswered_tool_call"),
    "duplicate_tool_call_id.jsonl": (chat(S, U, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "analyze_seo", "arguments": "{\"url\": \"a\"}"}},
        {"id": "c1", "type": "function", "function": {"name": "analyze_seo", "arguments": "{\"url\": \"b\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"}, {"role": "tool", "tool_call_id": "c1", "content": "2"},
        A) | {"tools": [SEO]}, "duplicate_tool_call_id"),
    "invalid_field.jsonl": (chat(S, U, {**A, "weight": 2}), "invalid_field"),
    "invalid_tools.jsonl": ({**chat(S, U, A), "tools": [{"type": "function", "function": {"description": "x"}}]},
                            "invalid_tools"),
}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, (bad, _) in CASES.items():
        bad = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
        lines = [json.dumps(good(1)).encode(), bad, json.dumps(good(3)).encode()]
        (HERE / name).write_bytes(b"\n".join(lines) + b"\n")
    # duplicate example ids: rows 1 and 2 share an id
    rows = [{**good(1), "id": "ex-1"}, {**good(2), "id": "ex-1"}, {**good(3), "id": "ex-3"}]
    (HERE / "duplicate_example_id.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (HERE / "empty.jsonl").write_bytes(b"")
    (HERE / "blank.jsonl").write_bytes(b"\n  \n\n")
    (HERE / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (HERE / "utf16.jsonl").write_bytes(json.dumps(good(1)).encode("utf-16"))


if __name__ == "__main__":
    main()
