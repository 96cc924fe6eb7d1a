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
def test_demo_walks_every_phase_through_the_api(tmp_path):
    # --no-strict: 30 seconds of training may well serve a wrong call; this test is about the phases
    proc = run_dsft("demo", "-n", "120", "--epochs", "2", "--time-budget", "30s", "--eval-limit", "6", "--no-strict",
                    cwd=tmp_path, check=0, timeout=600)  # every phase, on a CPU shared with the other test worker
    out = proc.stdout
    for phase in ("phase 1: data", "phase 2: configure", "phase 3: register", "phase 4: deploy", "continuous training",
                  "summary"):
        assert phase in out, out[-2000:]
    assert "adds up" in out and "POST /api/finetuning/phase1/create-validation-split -> 202" in out
    assert "registered lightdom:1" in out and "1 rejected (#3: no_assistant_turn)" in out
    assert "to prod: live" in out and "openai client -> prod" in out
    from dsft.registry import db, store

    with db.session() as s:  # the service's registry, in the DSFT_HOME the demo used
        mv = store.resolve(s, "lightdom@champion")
        assert mv.version == 1 and mv.dataset_id
    db.dispose()


def test_model_tiny_again_says_where_it_is_and_reuses_it(tmp_path):
    """Issue 13: right after `make demo`, the README's `dsft model tiny` found the folder taken and
    failed; the same build again is reused (exit 0, with the --model to pass), another is refused."""
    out = tmp_path / "m"
    run_dsft("model", "tiny", "--out", out, check=0)
    weights = (out / "model.safetensors").read_bytes()
    said = " ".join(run_dsft("model", "tiny", "--out", out, check=0).stdout.split())
    assert f"already built: {out}" in said and f"--model {out}" in said
    assert (out / "model.safetensors").read_bytes() == weights
    said = " ".join(run_dsft("model", "tiny", "--out", out, "--seed", "3", check=2).stderr.split())
    assert "built with other options" in said and "--force" in said and f"--model {out}" in said
