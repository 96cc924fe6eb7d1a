"""The embedded default's pretrained start: weights shipped with dsft, and how they were made.

Why: see model/warm_corpus.py -- ten minutes on 2 cores are too few for a from-scratch model to learn
both what every tool-use task shares and the user's task. So the tiny DeepSeek-V3 model starts from
weights pretrained once on generic tool use (random words, values drawn by shape, nobody's domain)
instead of from its copy circuit alone (model/copy_circuit.py, which is where that pretraining starts).

The weights (`warm/tiny-deepseek_v3.safetensors`, bfloat16) fit exactly one layout: the default sizes,
the default tokenizer (cut from DeepSeek's merges, checked by the vocabulary's hash) and the
DeepSeek-V3 chat format. Any other build -- `--corpus`, another family, arch or size,
`--random-init`, `--no-pretrained` -- starts as before. `provenance()` says how they were made
(model/warm_pretrain.py makes them: `python -m dsft.model.warm_pretrain --minutes 40`, then
`--resume --seed 1 --minutes 75 --rows 36000`, further training on new rows).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "warm"
WEIGHTS = FOLDER / "tiny-deepseek_v3.safetensors"
PROVENANCE = FOLDER / "tiny-deepseek_v3.json"


def vocabulary_hash(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def provenance() -> dict | None:
    return json.loads(PROVENANCE.read_text(encoding="utf-8")) if PROVENANCE.is_file() else None


def unfit(spec) -> str | None:
    """Why a build with these `TinySpec` options cannot start from the shipped weights, told from the
    options alone (`dsft model tiny` says it, and knows whether a folder it built is current);
    None when they may (`load_into` then checks the tokenizer and the sizes themselves)."""
    if provenance() is None or not WEIGHTS.is_file():
        return "this installation ships no pretrained weights"
    if spec.arch != "deepseek_v3" or not spec.copy_circuit:
        return "they are a DeepSeek-V3 model trained from the copy circuit"
    if spec.corpus:
        return "--corpus fits another tokenizer"
    if spec.vocab_size != 8192:
        return f"--vocab-size {spec.vocab_size} is not 8192"
    if spec.family != "deepseek_v3":
        return f"--family {spec.family} adds its own tokens"
    return None


def load_into(model, tokenizer) -> str | None:
    """Start `model` from the shipped weights if they fit it exactly -- the tokenizer's vocabulary
    hash, every weight's name and shape (the tied output layer is the embedding) -- and return None;
    else leave it as it is and return why not."""
    import torch
    from safetensors.torch import load_file

    info = provenance()
    if info is None or not WEIGHTS.is_file():
        return "this installation ships no pretrained weights"
    if vocabulary_hash(tokenizer) != info["vocabulary_sha256"]:
        return "the tokenizer is not the one they were trained with"
    weights = load_file(WEIGHTS)
    state = model.state_dict()
    wanted = {n: tuple(t.shape) for n, t in state.items()
              if not (model.config.tie_word_embeddings and n == "lm_head.weight")}
    if {n: tuple(t.shape) for n, t in weights.items()} != wanted:
        return "the model's sizes are not the ones they were trained at"
    with torch.no_grad():
        for name, value in weights.items():
            state[name].copy_(value.to(state[name].dtype))
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return None
