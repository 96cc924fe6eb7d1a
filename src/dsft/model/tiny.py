"""`dsft model tiny`: the embedded default model, built here because there is no hub.

A randomly initialised model of the real `DeepseekV3ForCausalLM` architecture (MLA attention,
MoE with shared and routed experts, a dense first layer) or its llama/qwen2 twins, with a
byte-level BPE tokenizer trained locally that carries DeepSeek's special tokens, a pad token
distinct from EOS, and dsft's DeepSeek-V3 chat template. Saved in the standard Hugging Face
layout (safetensors), so `from_pretrained` loads it offline. Everything is a function of the
seed: two builds with the same seed are byte-identical in weights.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dsft.chat.template import load_template

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
CHAT_TOKENS = ["<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
               "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
               "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>", "<think>", "</think>"]
ARCHS = ("deepseek_v3", "llama", "qwen2")

_GENERIC = [
    "The quick brown fox jumps over the lazy dog.", "A web page is made of HTML elements styled with CSS.",
    "Numbers such as 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100 and 2024 appear in many texts.",
    "Please let me know if you need anything else.", "Here is what I found, with a short explanation.",
    "JSON objects hold keys and values: strings, numbers, booleans, arrays and nested objects.",
    "Functions take arguments and return results; errors should be reported clearly.",
]


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model; defaults chosen to train on 2 CPU cores in minutes."""

    arch: str = "deepseek_v3"
    vocab_size: int = 4096
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    max_positions: int = 2048
    seed: int = 0


def tokenizer_corpus(seed: int) -> Iterator[str]:
    """Text the tokenizer learns merges from: generic sentences and LightDom-style tool traffic
    generated with a seed of its own (never the examples a demo evaluates on)."""
    import orjson

    from dsft.data.generate import builtin, generate, load_scenarios

    rng = random.Random(seed)
    yield from _GENERIC * 20
    yield builtin("lightdom_tools.json").read_text(encoding="utf-8")
    for row in generate(load_scenarios(), 400, seed=10_000 + seed):
        # The system text as the renderer writes it (schemas as compact JSON under "## Tools"), so
        # the prefix every tool-use example repeats becomes a few long tokens: throughput is learning.
        tools = "\n".join(orjson.dumps(t["function"]).decode() for t in row["tools"])
        yield f"{row['messages'][0]['content']}\n\n## Tools\nYou can call these functions:\n{tools}"
        for m in row["messages"][1:]:
            if m.get("content"):
                yield m["content"]
            for c in m.get("tool_calls") or ():
                yield c["function"]["name"] + "\n```json\n" + c["function"]["arguments"] + "\n```"
        for t in row["tools"]:
            yield orjson.dumps(t["function"]).decode()
    yield " ".join(str(rng.randint(0, 10_000)) for _ in range(2000))


def build_tokenizer(spec: TinySpec):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # No word-splitting regex: merges may cross spaces and punctuation, so the long JSON schemas and
    # phrases every example repeats compress into a few tokens (measured: far shorter sequences).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[BOS, EOS, PAD, *CHAT_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(tokenizer_corpus(spec.seed), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=CHAT_TOKENS, model_max_length=spec.max_positions)
    fast.chat_template = load_template("deepseek_v3")
    return fast


def build_config(spec: TinySpec, tokenizer):
    common = dict(vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
                  num_attention_heads=spec.heads, max_position_embeddings=spec.max_positions,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    if spec.arch == "deepseek_v3":
        from transformers import DeepseekV3Config

        return DeepseekV3Config(
            **common, intermediate_size=spec.hidden_size * 3, moe_intermediate_size=spec.hidden_size,
            num_key_value_heads=spec.heads, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
            # bitsandbytes' CPU kernels run a 4-bit (QLoRA) model in eval mode only when every
            # projection has inputs in multiples of 64 and outputs in multiples of 32: hidden 128,
            # q_a 64, kv_a 64 + 32 rope, q_b 4 x (16 + 32), kv_b 4 x (16 + 16), o 4 x 16.
            n_group=2, topk_group=1, first_k_dense_replace=1, q_lora_rank=64,
            kv_lora_rank=64, qk_rope_head_dim=32, qk_nope_head_dim=16, v_head_dim=16,
            rope_interleave=True, num_mtp_layers=0)
    if spec.arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, intermediate_size=spec.hidden_size * 3, num_key_value_heads=spec.heads // 2)
    if spec.arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common, intermediate_size=spec.hidden_size * 3, num_key_value_heads=spec.heads // 2)
    raise ValueError(f"unknown architecture {spec.arch!r}; use one of {', '.join(ARCHS)}")


def build(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write tokenizer + randomly initialised model to `out` in the HF layout."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(spec)
    config = build_config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.dsft_tiny = {"arch": spec.arch, "seed": spec.seed}  # lets `dsft train` pick the tiny preset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
