"""A merged model folder as one GGUF file for llama.cpp and Ollama, read back and checked.

Written with the `gguf` package (llama.cpp's own gguf-py, for the tensor names and keys); the
layout each architecture needs is llama.cpp's conversion (convert_hf_to_gguf.py and
conversion/deepseek.py, ggml-org/llama.cpp as stored at a458664f), re-derived here:

- llama / qwen2: one tensor per HF weight; llama's q/k rows permuted to llama.cpp's rotary layout.
- deepseek_v2 / deepseek_v3 (llama.cpp's `deepseek2`: MLA + MoE): routed experts stacked into one
  3-D tensor per projection (transformers 5 holds them fused as `gate_up_proj` in memory and saves
  them per expert; both are read: gate is the first half of `gate_up_proj`); MLA's `kv_b_proj` split
  per head into `attn_k_b` (transposed, for the absorbed attention llama.cpp runs) and `attn_v_b`,
  so the file declares one KV head of width kv_lora_rank + rope; the router's score-correction
  bias as `exp_probs_b.bias`. The rotary dims stay interleaved as DeepSeek trained them (llama.cpp
  runs deepseek2 with that rope).
The tokenizer section is deploy/gguf_vocab.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dsft.errors import UserError

ARCHES = {"llama": "LLAMA", "qwen2": "QWEN2", "deepseek_v2": "DEEPSEEK2", "deepseek_v3": "DEEPSEEK2"}
QUANTS = ("f32", "f16", "q8_0")
# llama.cpp (0.3.36's) reads a deepseek2 file without attention.q_lora_rank only when it has 27 layers
# (`is_lite` in llama-model.cpp); at any other depth it asks for the key and refuses the file
LITE_LAYERS = 27
_EXPERT = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def write(model_dir: Path, out_file: Path, quant: str = "f16") -> dict[str, Any]:
    """Write the GGUF; returns what was chosen for it (the pre-tokenizer, and how it was found)."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from dsft.chat.detect import recorded_family
    from dsft.chat.families import get
    from dsft.deploy import gguf_vocab

    if quant not in QUANTS:
        raise UserError(f"--quant {quant} is not a GGUF type dsft writes", f"use one of {', '.join(QUANTS)}")
    config = AutoConfig.from_pretrained(model_dir)
    arch_name = ARCHES.get(config.model_type)
    if arch_name is None:
        raise UserError(f"GGUF export supports {', '.join(ARCHES)} models, not {config.model_type}",
                        "export --merge and convert the folder with llama.cpp's convert_hf_to_gguf.py")
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tok = AutoTokenizer.from_pretrained(model_dir)
    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_dir.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or rope.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    if arch_name == "DEEPSEEK2":
        if not config.q_lora_rank and config.num_hidden_layers != LITE_LAYERS:
            raise UserError(f"{model_dir.name}: a DeepSeek model without q LoRA (V2-Lite's attention) of "
                            f"{config.num_hidden_layers} layers would not load in llama.cpp, which tells that layout "
                            f"by V2-Lite's {LITE_LAYERS} layers",
                            "export --format safetensors and serve it with transformers or vLLM")
        _deepseek2_keys(writer, config, rope)
    else:
        writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    pre = gguf_vocab.choose(tok, get(recorded_family(model_dir) or "deepseek_v3"))
    _vocabulary(writer, tok, config.vocab_size, pre.name)
    for hf_name, t in hf_tensors(model_dir, config):
        if hf_name.endswith("e_score_correction_bias"):
            name = names.get_name(hf_name.removesuffix("_bias")) + ".bias"
        else:
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"no GGUF name for tensor {hf_name}", "this architecture variant is not supported")
        data = t.to(torch.float32).numpy()
        if arch_name == "LLAMA" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in hf_name else config.num_key_value_heads
            data = _permute(data, heads)
        kind = gguf.GGMLQuantizationType.F32
        if data.ndim >= 2 and quant != "f32":
            if quant == "q8_0" and data.shape[-1] % 32 == 0:
                data, kind = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
            else:
                data, kind = data.astype(np.float16), gguf.GGMLQuantizationType.F16
        writer.add_tensor(name, data, raw_dtype=kind if kind == gguf.GGMLQuantizationType.Q8_0 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"tokenizer": pre.summary(), **({"differing": pre.differing} if pre.differing else {})}


def _deepseek2_keys(writer, config, rope: dict) -> None:
    """MLA as llama.cpp runs it (one KV head of the latent width) and the MoE router's settings."""
    import gguf

    nope, rot, v, kv_rank = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim, config.kv_lora_rank
    writer.add_head_count_kv(1)
    writer.add_key_length(kv_rank + rot)
    writer.add_value_length(kv_rank)
    writer.add_key_length_mla(nope + rot)
    writer.add_value_length_mla(v)
    writer.add_kv_lora_rank(kv_rank)
    if config.q_lora_rank:
        writer.add_q_lora_rank(config.q_lora_rank)
    writer.add_rope_dimension_count(rot)
    writer.add_vocab_size(config.vocab_size)
    writer.add_leading_dense_block_count(config.first_k_dense_replace)
    writer.add_expert_count(config.n_routed_experts)
    writer.add_expert_used_count(config.num_experts_per_tok)
    writer.add_expert_shared_count(config.n_shared_experts or 0)
    writer.add_expert_feed_forward_length(config.moe_intermediate_size)
    writer.add_expert_weights_scale(float(config.routed_scaling_factor))
    writer.add_expert_weights_norm(bool(config.norm_topk_prob))
    # DeepSeek-V3 routes by sigmoid scores (with the correction bias), V2 by softmax
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if config.model_type == "deepseek_v3"
                                  else gguf.ExpertGatingFuncType.SOFTMAX)
    if getattr(config, "n_group", None):
        writer.add_expert_group_count(config.n_group)
        writer.add_expert_group_used_count(config.topk_group)
    if rope.get("rope_type") == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
        if rope.get("mscale_all_dim"):
            writer.add_rope_scaling_yarn_log_mul(0.1 * float(rope["mscale_all_dim"]))


def hf_tensors(model_dir: Path, config) -> Iterator[tuple[str, Any]]:
    """The folder's weights under the HF names llama.cpp's mapping knows, in the layout it loads."""
    import torch
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    if "lm_head.weight" not in tensors and getattr(config, "tie_word_embeddings", False):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    if config.model_type not in ("deepseek_v2", "deepseek_v3"):
        yield from tensors.items()
        return
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for name, t in tensors.items():
        if m := _EXPERT.match(name):
            experts.setdefault((int(m[1]), m[3]), {})[int(m[2])] = t
        elif name.endswith("mlp.experts.gate_up_proj"):  # fused (E, 2 * I, H): gate rows first
            gate, up = t.chunk(2, dim=1)
            yield name.replace("gate_up_proj", "gate_proj.weight"), gate
            yield name.replace("gate_up_proj", "up_proj.weight"), up
        elif name.endswith("mlp.experts.down_proj"):
            yield name + ".weight", t
        elif name.endswith("self_attn.kv_b_proj.weight"):
            k_b, v_b = split_kv_b(t, config)
            yield name.replace("kv_b_proj", "k_b_proj"), k_b
            yield name.replace("kv_b_proj", "v_b_proj"), v_b
        else:
            yield name, t
    for (layer, proj), by_id in sorted(experts.items()):
        if sorted(by_id) != list(range(config.n_routed_experts)):
            raise UserError(f"layer {layer} holds experts {sorted(by_id)} of {proj}, not all {config.n_routed_experts}",
                            "export from a complete merged folder (dsft export --merge)")
        yield f"model.layers.{layer}.mlp.experts.{proj}.weight", torch.stack([by_id[e] for e in sorted(by_id)])


def split_kv_b(t, config):
    """kv_b_proj (heads * (nope + v), kv_lora_rank) -> k_b (heads, kv_lora_rank, nope), v_b (heads, v, kv_lora_rank)."""
    nope, v = config.qk_nope_head_dim, config.v_head_dim
    per_head = t.reshape(config.num_attention_heads, nope + v, t.shape[-1])
    return per_head[:, :nope, :].transpose(1, 2).contiguous(), per_head[:, nope:, :].contiguous()


def _permute(w, n_head: int):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocabulary(writer, tok, n_vocab: int, pre: str) -> None:
    """llama.cpp needs exactly one token per embedding row: unused rows get placeholder tokens, and
    tokens past the last row (e.g. the `<|endoftext|>` transformers' Qwen2 tokenizer adds by itself)
    are left out: the model can neither read nor produce them."""
    import json

    import gguf

    vocab = tok.get_vocab()
    by_id = sorted(((t, i) for t, i in vocab.items() if i < n_vocab), key=lambda kv: kv[1])
    taken = {i for _, i in by_id}
    by_id += [(f"[PAD{i}]", i) for i in range(n_vocab) if i not in taken]
    by_id.sort(key=lambda kv: kv[1])
    special = set(tok.all_special_ids) | {i for t, i in vocab.items() if t in (tok.get_added_vocab() or {})}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list([t for t, _ in by_id])
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in by_id])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"].get("merges", [])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    if tok.pad_token_id is not None:
        writer.add_pad_token_id(tok.pad_token_id)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)


def read(path: Path) -> dict[str, Any]:
    """The file read back: architecture, counts, the tokenizer's pre-tokenizer (to prove it is well-formed)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    return {"architecture": field(r, "general.architecture"), "tensors": len(r.tensors),
            "tensor_names": [t.name for t in r.tensors],
            "tokens": len(r.fields["tokenizer.ggml.tokens"].data), "pre": field(r, "tokenizer.ggml.pre"),
            "types": sorted({t.tensor_type.name for t in r.tensors})}


def field(reader, key: str):
    """One metadata value of a GGUFReader: a str, a number, or None when the key is absent."""
    import gguf

    f = reader.fields.get(key)
    if f is None:
        return None
    value = f.parts[f.data[0]]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode("utf-8")
    return value.tolist()[0] if len(value) == 1 else value.tolist()
