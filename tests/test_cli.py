"""The real `dsft` command end to end."""

from __future__ import annotations

import json

import pytest

from conftest import run_dsft
from dsft import __version__
from dsft.data.generate import builtin


def test_version_and_help():
    assert run_dsft("--version", check=0).stdout.strip() == __version__
    assert "validate" in run_dsft("data", "--help", check=0).stdout


def test_validate_clean_file_exits_0(tmp_path):
    out = tmp_path / "g.jsonl"
    run_dsft("data", "generate", "-n", "40", "--out", out, check=0)
    data = json.loads(run_dsft("data", "validate", out, "--json", check=0).stdout)
    assert data["ok"] and data["counts"]["valid"] == 40 and data["counts"]["errors"] == 0


def test_bad_tools_file_is_a_clear_error(tmp_path):
    (tmp_path / "t.json").write_text("{not json")
    proc = run_dsft("data", "validate", builtin("samples"), "--tools", tmp_path / "t.json", check=2)
    assert "tools file" in proc.stderr and "fix:" in proc.stderr


@pytest.mark.slow
def test_demo_runs_the_data_path(tmp_path):
    proc = run_dsft("demo", "-n", "120", cwd=tmp_path, check=0)
    assert "adds up" in proc.stdout and "unknown_role" in proc.stdout
    report = json.loads((tmp_path / "home" / "demo" / "dataset" / "report.json").read_text())
    assert report["counts"]["balanced"] and report["counts"]["validation"] > 0
