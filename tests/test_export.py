"""`dsft export`: merged safetensors equal the adapter model; GGUF files read back whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import torch

from dsft.deploy.export import export, read_gguf
from tests.conftest import run_dsft


def lora_run(root: Path, arch: str, **overrides) -> Path:
    from dsft.data.generate import generate, load_scenarios
    from dsft.model.tiny import TinySpec, build
    from dsft.train.config import load
    from dsft.train.trainer import train

    base = build(root / f"tiny-{arch}", TinySpec(arch=arch))
    data = root / "d.jsonl"
    data.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(load_scenarios(), 40, seed=1)))
    cfg = load(None, {"model.name_or_path": str(base), "data.train": [str(data)], "output.dir": str(root / f"run-{arch}"),
                      "method": "lora", "training.epochs": 1, "training.eval_tool_sample": 0,
                      "training.learning_rate": 5e-3, **overrides})
    train(cfg)
    return root / f"run-{arch}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    return {arch: lora_run(root, arch) for arch in ("deepseek_v3", "llama", "qwen2")}


def test_merged_model_gives_the_adapter_models_logits(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    from dsft.eval.tooluse import load_for_eval

    out = tmp_path / "merged"
    export(str(runs["deepseek_v3"]), out)
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "README.md"} <= {
        p.name for p in out.iterdir()}
    assert not list(out.glob("*.bin")) and not (out / "adapter_config.json").exists()
    assert "dsft" in (out / "README.md").read_text()
    adapter, tok = load_for_eval(str(runs["deepseek_v3"]))
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor([tok.encode("Run an SEO audit of https://example.com")])
    with torch.no_grad():
        a, b = adapter(input_ids=ids).logits, merged(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    base = AutoModelForCausalLM.from_pretrained(runs["deepseek_v3"].parent / "tiny-deepseek_v3", dtype=torch.float32)
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, b, atol=1e-4)  # the merge changed something


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("quant", ["f32", "q8_0"])
def test_gguf_reads_back_with_every_tensor(runs, tmp_path, arch, quant):
    import gguf
    from safetensors.torch import load_file

    out = tmp_path / "gguf"
    result = export(str(runs[arch]), out, fmt="gguf", quant=quant)
    check = read_gguf(Path(result["gguf"]))
    hf = load_file(out / "merged" / "model.safetensors")
    assert check["architecture"] == arch and check["tokens"] == hf["model.embed_tokens.weight"].shape[0]
    assert check["tensors"] == len(hf) + ("lm_head.weight" not in hf)
    reader = gguf.GGUFReader(result["gguf"])
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    if quant == "f32":
        got = torch.from_numpy(embd.data.copy()).reshape(hf["model.embed_tokens.weight"].shape)
        assert torch.allclose(got, hf["model.embed_tokens.weight"].float())
    else:
        assert embd.tensor_type == gguf.GGMLQuantizationType.Q8_0
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{Path(result['gguf']).name}") and "<｜Assistant｜>" in modelfile
    assert 'PARAMETER stop "<｜end▁of▁sentence｜>"' in modelfile


def test_unsupported_exports_are_clear_errors(runs, tmp_path):
    proc = run_dsft("export", runs["deepseek_v3"], "--out", tmp_path / "g", "--format", "gguf", check=2)
    assert "deepseek2" in proc.stderr and "convert_hf_to_gguf.py" in proc.stderr
    assert not (tmp_path / "g").exists()
    proc = run_dsft("export", runs["llama"], "--out", tmp_path / "q", "--quant", "awq", check=2)
    assert "needs a CUDA GPU" in proc.stderr
    proc = run_dsft("export", runs["llama"], "--out", tmp_path / "x", "--format", "onnx", check=2)
    assert "unknown --format" in proc.stderr
