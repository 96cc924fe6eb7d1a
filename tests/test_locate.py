"""Issue 13: a model name is sorted before transformers is asked, so a typo or a machine without
network fails in seconds with one message, and the models the guide names estimate offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest


def dsft(*args, env: dict, cwd=None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dsft", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env}, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, time.monotonic() - started


@pytest.fixture
def offline(tmp_path) -> dict:
    """A machine whose hub cannot be reached (a closed local port: refused at once) and an empty cache."""
    return {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": ""}


def test_a_mistyped_path_is_no_such_folder(tmp_path, offline):
    proc, _ = dsft("estimate", "--model", "./models/nope", env=offline, cwd=tmp_path)
    assert proc.returncode == 2 and "no such folder: ./models/nope" in proc.stderr and "hub" not in proc.stderr
    proc, _ = dsft("train", "--model", "models/tiny", "--train", "x.jsonl", "--out", "run", env=offline, cwd=tmp_path)
    said = " ".join(proc.stderr.split())  # ORG/NAME-shaped: both readings are answered
    assert proc.returncode == 2 and "'models/tiny': no such folder, and as a Hugging Face hub id" in said


def test_a_hub_id_offline_fails_at_once_with_one_message_that_says_what_to_do(tmp_path, offline):
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "hello"}]}) + "\n")
    proc, seconds = dsft("train", "--model", "acme/unknown-7b", "--train", tmp_path / "d.jsonl",
                         "--out", tmp_path / "run", env=offline)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and seconds < 20, (seconds, said)
    assert "'acme/unknown-7b': no such folder, and as a Hugging Face hub id it is not in" in said and "127.0.0.1 cannot be reached" in said
    assert "HF_HUB_OFFLINE" in said and "--local-dir" in said and said.count("error:") == 1
    assert not (tmp_path / "run").exists()


def test_a_cached_hub_id_loads_offline_without_retrying(tmp_path, offline, tiny_model):
    """A model in the Hugging Face cache (as `hf download` leaves it) is used with no network."""
    snapshot = tmp_path / "hf" / "hub" / "models--acme--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    proc, seconds = dsft("estimate", "--model", "acme/tiny", "--method", "lora", "--json", env=offline)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] == 1_746_432 and seconds < 30


# Parameter counts of the shipped shapes, built on the meta device. Each shape is the official
# config.json's sizes (sources in src/dsft/model/shapes/*.json); the counts agree with the sizes
# DeepSeek publishes: V2-Lite 15.7B, V3 671B (without its MTP layer), V4-Flash 284B, coder 1.3/6.7/33B,
# R1 distills 1.5B/7B (Qwen2.5 bases: 1.78B and 7.62B with embeddings).
@pytest.mark.parametrize("model, params", [
    ("deepseek-ai/DeepSeek-V2-Lite", 15_706_484_224),
    ("deepseek-ai/deepseek-coder-1.3b-instruct", 1_346_471_936),
    ("deepseek-ai/deepseek-coder-6.7b-instruct", 6_740_512_768),
    ("deepseek-ai/deepseek-coder-33b-instruct", 33_342_991_360),
    ("deepseek-ai/DeepSeek-V3", 671_026_404_352),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1_777_088_000),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7_615_616_512),
    ("deepseek-ai/DeepSeek-V4-Flash", 284_332_230_231),
])
def test_the_guides_models_estimate_offline_from_shipped_shapes(model, params, monkeypatch):
    from huggingface_hub import constants

    from dsft.model import shapes
    from dsft.train.estimate import estimate

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # any network use would fail
    assert model in shapes.ids()
    est = estimate(model, "qlora")
    assert est.params == params and est.trainable > 0


def test_the_guides_shipped_configs_estimate_offline_in_seconds(tmp_path, offline):
    """`dsft estimate` on a shipped config's model (configs/deepseek-v2-lite-lora.yaml) took 52 s offline."""
    import yaml

    name = yaml.safe_load(open("configs/deepseek-v2-lite-lora.yaml"))["model"]["name_or_path"]
    proc, seconds = dsft("estimate", "--model", name, "--json", env=offline)
    assert proc.returncode == 0 and json.loads(proc.stdout)["params"] == 15_706_484_224 and seconds < 20
