"""`dsft export`: merged safetensors equal the adapter model; GGUF files read back whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import torch

from dsft.deploy.export import export
from dsft.deploy.to_gguf import field, split_kv_b
from dsft.deploy.to_gguf import read as read_gguf
from tests.conftest import run_dsft


def lora_run(root: Path, arch: str, layers: int = 2, **overrides) -> Path:
    from dsft.data.generate import generate, load_scenarios
    from dsft.model.tiny import TinySpec, build
    from dsft.train.config import load
    from dsft.train.trainer import train

    base = build(root / f"tiny-{arch}", TinySpec(arch=arch, layers=layers))
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
    # V2-Lite's layout at V2-Lite's depth: llama.cpp tells that layout by its 27 layers (deploy/to_gguf.py)
    return {arch: lora_run(root, arch, layers=27 if arch == "deepseek_v2" else 2)
            for arch in ("deepseek_v3", "deepseek_v2", "llama", "qwen2")}


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


@pytest.mark.parametrize("arch", ["deepseek_v3", "deepseek_v2"])
def test_deepseek_gguf_holds_every_weight_in_llama_cpps_deepseek2_layout(runs, tmp_path, arch):
    """Layout from llama.cpp's conversion/deepseek.py (ggml-org/llama.cpp @ a458664f): experts stacked
    per projection, kv_b_proj split per head into k_b (transposed) and v_b, one latent KV head."""
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoConfig

    out = tmp_path / "gguf"
    result = export(str(runs[arch]), out, fmt="gguf", quant="f32")
    merged = out / "merged"
    hf, config = load_file(merged / "model.safetensors"), AutoConfig.from_pretrained(merged)
    reader = gguf.GGUFReader(result["gguf"])
    got = {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}
    layers, experts = config.num_hidden_layers, config.n_routed_experts
    assert field(reader, "general.architecture") == "deepseek2" and result["check"]["pre"] == "deepseek-v3"
    keys = {"deepseek2.attention.head_count_kv": 1, "deepseek2.attention.kv_lora_rank": config.kv_lora_rank,
            "deepseek2.attention.key_length": config.kv_lora_rank + config.qk_rope_head_dim,
            "deepseek2.attention.value_length": config.kv_lora_rank,
            "deepseek2.attention.key_length_mla": config.qk_nope_head_dim + config.qk_rope_head_dim,
            "deepseek2.attention.value_length_mla": config.v_head_dim,
            "deepseek2.rope.dimension_count": config.qk_rope_head_dim,
            "deepseek2.leading_dense_block_count": config.first_k_dense_replace,
            "deepseek2.expert_count": experts, "deepseek2.expert_used_count": config.num_experts_per_tok,
            "deepseek2.expert_shared_count": config.n_shared_experts,
            "deepseek2.expert_feed_forward_length": config.moe_intermediate_size,
            "deepseek2.expert_gating_func": 2 if arch == "deepseek_v3" else 1,
            "deepseek2.attention.q_lora_rank": config.q_lora_rank}
    assert {k: field(reader, k) for k in keys} == keys
    for i in range(layers):
        k_b, v_b = got[f"blk.{i}.attn_k_b.weight"], got[f"blk.{i}.attn_v_b.weight"]
        kv_b = hf[f"model.layers.{i}.self_attn.kv_b_proj.weight"]
        heads, nope = config.num_attention_heads, config.qk_nope_head_dim
        assert k_b.shape == (heads, config.kv_lora_rank, nope) and v_b.shape == (heads, config.v_head_dim, config.kv_lora_rank)
        rebuilt = torch.cat([k_b.transpose(1, 2), v_b], dim=1).reshape(kv_b.shape)
        assert torch.equal(rebuilt, kv_b)
        assert all(torch.equal(a, b) for a, b in zip(split_kv_b(kv_b, config), (k_b, v_b)))
        if i < config.first_k_dense_replace:
            assert torch.equal(got[f"blk.{i}.ffn_gate.weight"], hf[f"model.layers.{i}.mlp.gate_proj.weight"])
            continue
        for proj, short in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
            stacked = got[f"blk.{i}.ffn_{short}_exps.weight"]
            assert stacked.shape[0] == experts
            for e in range(experts):
                assert torch.equal(stacked[e], hf[f"model.layers.{i}.mlp.experts.{e}.{proj}.weight"])
            assert torch.equal(got[f"blk.{i}.ffn_{short}_shexp.weight"], hf[f"model.layers.{i}.mlp.shared_experts.{proj}.weight"])
        assert torch.equal(got[f"blk.{i}.ffn_gate_inp.weight"], hf[f"model.layers.{i}.mlp.gate.weight"])
        if arch == "deepseek_v3":
            assert torch.equal(got[f"blk.{i}.exp_probs_b.bias"], hf[f"model.layers.{i}.mlp.gate.e_score_correction_bias"])
    # every HF weight went somewhere: the experts and kv_b are the only ones written as other tensors
    per_expert = 3 * experts * (layers - config.first_k_dense_replace)
    assert len(got) == len(hf) - per_expert + 3 * (layers - config.first_k_dense_replace) + layers + 1  # k_b+v_b, lm_head


def test_unsupported_exports_are_clear_errors(runs, tmp_path):
    shallow = lora_run(tmp_path, "deepseek_v2")  # V2-Lite's attention at 2 layers: llama.cpp could not read it
    proc = run_dsft("export", shallow, "--out", tmp_path / "v2", "--format", "gguf", check=2)
    assert "would not load in llama.cpp" in proc.stderr and not (tmp_path / "v2").exists()
    proc = run_dsft("export", runs["llama"], "--out", tmp_path / "q", "--quant", "awq", check=2)
    assert "needs a CUDA GPU" in proc.stderr
    proc = run_dsft("export", runs["llama"], "--out", tmp_path / "x", "--format", "onnx", check=2)
    assert "unknown --format" in proc.stderr
