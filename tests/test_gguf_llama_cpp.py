"""dsft's GGUF files in llama.cpp itself: the ids of chat prompts and greedy tokens equal transformers'.

Runs where llama-cpp-python is importable (`pip install llama-cpp-python==0.3.36` builds llama.cpp
from source: ~15 minutes on 2 cores; on CPUs that report AMX without supporting it, quantized
kernels may need `use_extra_bufts=False`). Skipped otherwise, and in CI, which does not build it."""

from __future__ import annotations

from pathlib import Path

import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (see this file's docstring)")

pytestmark = pytest.mark.slow


def _gguf(model_dir: Path, tmp_path: Path) -> Path:
    from dsft.deploy import to_gguf

    target = tmp_path / f"{model_dir.name}.f32.gguf"
    to_gguf.write(model_dir, target, "f32")
    return target


def test_llama_cpp_tokenizes_300_chat_prompts_as_training_did(tiny_model, tiny_tokenizer, tmp_path):
    from dsft.chat.families import get
    from dsft.deploy.gguf_vocab import probe_texts

    llm = llama_cpp.Llama(model_path=str(_gguf(tiny_model, tmp_path)), vocab_only=True, verbose=False)
    prompts = probe_texts(tiny_tokenizer, get("deepseek_v3"))[:300]
    same = sum(llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
               == tiny_tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts)
    assert same == len(prompts)


def test_llama_cpp_greedy_tokens_equal_transformers(tiny_model, tiny_tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    prompt = tiny_tokenizer("<｜User｜>Book a table for two at noon<｜Assistant｜>", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ours = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)[0, len(prompt):].tolist()
    llm = llama_cpp.Llama(model_path=str(_gguf(tiny_model, tmp_path)), n_ctx=256, verbose=False)
    theirs = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        theirs.append(token)
        if len(theirs) == len(ours) or token == llm.token_eos():
            break
    assert theirs == ours[:len(theirs)] and len(theirs) >= min(len(ours), 8)
