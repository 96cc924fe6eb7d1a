"""Every bad-input kind: its code at the right line, and the good rows of the same file survive."""

from __future__ import annotations

import json

import pytest
from conftest import ASSETS, read_jsonl, run_dsft

from dsft.data.codes import InputError
from dsft.data.prepare import prepare
from dsft.data.validate import validate

BAD = ASSETS / "bad"
# file -> (code, line): the generator (assets/build_bad_inputs.py) puts the bad record on line 2.
ROW_CASES = {
    "invalid_json.jsonl": "invalid_json",
    "truncated_record.jsonl": "truncated_record",
    "not_an_object.jsonl": "not_an_object",
    "not_utf8.jsonl": "not_utf8",
    "unknown_layout.jsonl": "unknown_layout",
    "empty_messages.jsonl": "empty_messages",
    "unknown_role.jsonl": "unknown_role",
    "missing_content.jsonl": "missing_content",
    "no_assistant_turn.jsonl": "no_assistant_turn",
    "invalid_arguments_json.jsonl": "invalid_arguments_json",
    "arguments_schema_mismatch.jsonl": "arguments_schema_mismatch",
    "undeclared_tool.jsonl": "undeclared_tool",
    "orphan_tool_result.jsonl": "orphan_tool_result",
    "unanswered_tool_call.jsonl": "unanswered_tool_call",
    "duplicate_tool_call_id.jsonl": "duplicate_tool_call_id",
    "duplicate_example_id.jsonl": "duplicate_example_id",
    "invalid_field.jsonl": "invalid_field",
    "invalid_tools.jsonl": "invalid_tools",
}


@pytest.mark.parametrize("name,code", sorted(ROW_CASES.items()))
def test_bad_row_is_named_at_its_line_and_good_rows_survive(name, code, tmp_path):
    result = validate([BAD / name])
    errors = [(f.code, f.line) for f in result.findings if f.severity == "error"]
    assert (code, 2) in errors
    assert all(line == 2 for _, line in errors), errors
    assert result.exit_code == 1
    assert result.tally.read - result.tally.rejected == 2

    out = prepare([BAD / name], tmp_path / "ds", val_ratio=0.0)
    train = read_jsonl(out.out / "train.jsonl")
    assert [r["metadata"]["dsft"]["origin"].rsplit(":", 1)[1] for r in train] == ["1", "3"]
    rejects = read_jsonl(out.out / "rejects.jsonl")
    assert len(rejects) == 1 and rejects[0]["line"] == 2 and code in rejects[0]["codes"]
    assert rejects[0]["text"], "the original text of a rejected row is kept"
    assert out.report["counts"]["balanced"]


@pytest.mark.parametrize("name,code", [("empty.jsonl", "empty_file"), ("blank.jsonl", "empty_file"),
                                       ("binary.jsonl", "binary_file"), ("utf16.jsonl", "not_utf8"),
                                       ("missing.jsonl", "file_not_found")])
def test_unreadable_input_exits_2_with_its_code(name, code, tmp_path):
    with pytest.raises(InputError) as info:
        validate([BAD / name])
    assert [f.code for f in info.value.findings] == [code]
    proc = run_dsft("data", "validate", BAD / name, "--json", check=2)
    assert json.loads(proc.stdout)["findings"][0]["code"] == code
    proc = run_dsft("data", "prepare", BAD / name, "--out", tmp_path / "ds", check=2)
    assert code in proc.stderr and "fix:" in proc.stderr
    assert not (tmp_path / "ds").exists(), "nothing is written when an input cannot be read"


def test_cli_validate_reports_code_file_and_line():
    proc = run_dsft("data", "validate", BAD / "unknown_role.jsonl", check=1)
    assert "unknown_role" in proc.stdout and "unknown_role.jsonl:2" in proc.stdout
    data = json.loads(run_dsft("data", "validate", BAD / "unknown_role.jsonl", "--json", check=1).stdout)
    finding = next(f for f in data["findings"] if f["code"] == "unknown_role")
    assert finding["line"] == 2 and finding["file"].endswith("unknown_role.jsonl")
    assert "customer" in finding["message"] and finding["fix"]
    assert data["counts"]["valid"] == 2


def test_whole_bad_folder_validates_without_traceback(tmp_path):
    good = [p for p in BAD.iterdir() if p.name in ROW_CASES]
    proc = run_dsft("data", "validate", *good, "--json", check=1)
    data = json.loads(proc.stdout)
    assert set(ROW_CASES.values()) <= set(data["summary"])
