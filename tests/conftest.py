"""Shared helpers: run the real `dsft` command, find test assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own DSFT_HOME: nothing leaks between tests or into the checkout."""
    monkeypatch.setenv("DSFT_HOME", str(tmp_path / "home"))


def run_dsft(*args: str, cwd: Path | None = None, check: int | None = None) -> subprocess.CompletedProcess:
    """The real console command, in a subprocess, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "dsft", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The embedded default model (deepseek_v3, seed 0), built once per test worker."""
    from dsft.model.tiny import TinySpec, build

    return build(tmp_path_factory.mktemp("tiny") / "tiny-deepseek_v3", TinySpec())


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)
