"""Readers: every file shape, with the line where each record starts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ASSETS

from dsft.data.codes import InputError
from dsft.data.sources import discover, read_records

LAY = ASSETS / "layouts"


def records(*paths):
    return list(read_records(discover(paths)))


def test_pretty_printed_objects_with_a_truncated_one_and_two_on_a_line():
    recs = records(LAY / "pretty.jsonl")
    assert [(r.line, r.finding.code if r.finding else "ok") for r in recs] == [
        (1, "ok"), (6, "truncated_record"), (9, "ok"), (14, "ok"), (14, "ok")]
    assert recs[2].data["messages"][1]["content"] == "Score shop.io"
    assert [r.data["text"] for r in recs[3:]] == ["one", "two on the same line"]
    assert "Score acme.com" in recs[1].text, "a rejected record keeps its original text"


def test_bom_and_crlf_are_accepted():
    recs = records(LAY / "bom_crlf.jsonl")
    assert [(r.line, r.finding) for r in recs] == [(1, None), (3, None)]
    assert recs[1].data["completion"] == " Hello!"


def test_json_array_element_lines_and_a_broken_element():
    recs = records(LAY / "array.json")
    assert [(r.line, r.finding.code if r.finding else "ok") for r in recs] == [
        (2, "ok"), (3, "invalid_json"), (4, "ok")]
    assert recs[2].data["history"] == [["What is CSS?", "Cascading Style Sheets."]]




def test_csv_rows_start_lines_multiline_cells_and_json_columns():
    recs = records(LAY / "table.csv")
    assert [(r.line, r.finding.code if r.finding else "ok") for r in recs] == [
        (2, "ok"), (3, "ok"), (5, "truncated_record"), (6, "ok")]
    assert recs[1].data["output"].endswith("It suits page layouts.")
    assert recs[0].data["category"] == "css"
    recs = records(LAY / "messages.csv")
    assert recs[0].data["messages"][1]["content"] == "An assistant for LightDom."


def test_parquet_rows(tmp_path):
    table = pa.table({"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                                   [{"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]]})
    pq.write_table(table, tmp_path / "d.parquet")
    recs = records(tmp_path / "d.parquet")
    assert [r.line for r in recs] == [1, 2]
    assert recs[1].data["messages"][1]["content"] == "ciao"


def test_folder_is_expanded_and_sorted():
    files = discover([LAY])
    assert [f.path.name for f in files] == sorted(p.name for p in LAY.iterdir())


def test_all_unreadable_inputs_are_reported_together(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError) as info:
        discover([tmp_path / "empty.jsonl", tmp_path / "notes.txt", tmp_path / "missing.jsonl"])
    assert sorted(f.code for f in info.value.findings) == ["empty_file", "file_not_found", "unsupported_file"]


def test_invalid_utf8_inside_a_multiline_record(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"messages": [\n  {"role": "user", "content": "caf\xe9"}\n]}\n{"text": "fine"}\n')
    recs = records(path)
    assert [(r.line, r.finding.code if r.finding else "ok") for r in recs][0] == (1, "not_utf8")
    assert recs[-1].data == {"text": "fine"}


def test_truncated_array_is_reported(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text((LAY / "array.json").read_text().rsplit("]", 1)[0])
    recs = records(path)
    assert recs[-1].finding.code == "truncated_record"
    assert sum(1 for r in recs if r.finding is None) == 2


def test_a_repeated_tool_list_is_parsed_once_and_rows_read_as_with_a_full_parse(tmp_path):
    import orjson

    tools = [{"type": "function", "function": {"name": "analyze_seo", "parameters": {"type": "object"}}}]
    good = {"messages": [{"role": "user", "content": "Score a.io"}], "tools": tools, "id": 7, "extra": [1.5, None]}
    lines = [orjson.dumps(good),
             orjson.dumps({**good, "functions": [{"name": "f"}], "tools": tools}),
             b'{"messages": [], "tools": [{"name": "\xff"}]}',  # a new list that is not UTF-8
             b'{"messages": [], "tools": [1e999]}',  # a number JSON cannot hold
             b'{"messages": [], "tools": [1, 2}',  # truncated inside the list
             b'{"tools": 1, "tools": ' + orjson.dumps(tools) + b', "messages": []}',  # the last key wins, as in JSON
             orjson.dumps(good)]
    path = tmp_path / "tools.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    recs = records(path)
    assert [(r.line, r.finding.code if r.finding else "ok") for r in recs] == [
        (1, "ok"), (2, "ok"), (3, "not_utf8"), (4, "invalid_json"), (5, "invalid_json"), (6, "ok"), (7, "ok")]
    for r, line in zip(recs, lines):
        if r.finding is None:
            assert r.data == orjson.loads(line)
            assert list(r.data) == list(orjson.loads(line)), "key order is kept"
    assert recs[0].data["tools"] is recs[1].data["tools"] is recs[6].data["tools"], "parsed once, shared"
