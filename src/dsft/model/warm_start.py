"""The embedded default's pretrained start: weights shipped with dsft, and how they were made.

Why: see model/warm_corpus.py -- ten minutes on 2 cores are too few for a from-scratch model to learn
both what every tool-use task shares and the user's task. So the tiny DeepSeek-V3 model starts from
weights pretrained once on generic tool use (random words, values drawn by shape, nobody's domain)
instead of from its copy circuit alone (model/copy_circuit.py, which is where that pretraining starts).

The weights (`warm/tiny-deepseek_v3.safetensors`, bfloat16) fit exactly one layout: the default sizes,
the default tokenizer (cut from DeepSeek's merges, checked by the vocabulary's hash) and the
DeepSeek-V3 chat format. Any other build -- `--corpus`, another family, arch or size,
`--random-init`, `--no-pretrained` -- starts as before. `provenance()` says how they were made;
They were made in two stages, both recorded in the provenance: `python -m dsft.model.warm_start
--minutes 40`, then `--resume --seed 1 --minutes 75 --rows 36000` (further training on new rows).
The corpus and the recipe are functions of their seeds; the step count, fitted to the time, is
the machine's.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
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


def store(run: Path) -> None:
    """The trained run's weights as the model holds them in memory (transformers saves fused experts
    split per expert), in bfloat16; the tied output layer is the embedding and is left out."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run)
    state = {n: t.detach().to(torch.bfloat16).contiguous() for n, t in model.state_dict().items()
             if not (model.config.tie_word_embeddings and n == "lm_head.weight")}
    FOLDER.mkdir(parents=True, exist_ok=True)
    save_file(state, WEIGHTS)


def pretrain(minutes: float, rows: int = 24000, seed: int = 0, work: Path | None = None,
             resume: bool = False) -> dict:
    """Build the copy-circuit model (`resume`: the shipped pretrained one, to train it further on a
    corpus of another seed), write the generic corpus, train on it with `dsft train` for `minutes`,
    and store the result (bfloat16) with its provenance, earlier stages kept in `stages`."""
    from transformers import AutoTokenizer

    from dsft.model.tiny import TinySpec, build
    from dsft.model.warm_corpus import conversations, vocabulary_words

    before = provenance() if resume else None
    if resume and before is None:
        raise SystemExit("--resume: this installation ships no pretrained weights to continue from")
    work = Path(work or tempfile.mkdtemp(prefix="dsft-warm-"))
    base = build(work / "base", TinySpec(pretrained=resume))
    if resume and not json.loads((base / "config.json").read_text(encoding="utf-8"))["dsft_tiny"].get("pretrained"):
        raise SystemExit("--resume: the shipped weights do not fit the default build")
    tokenizer = AutoTokenizer.from_pretrained(base)
    words = vocabulary_words(tokenizer)
    corpus, validation = work / "corpus.jsonl", work / "validation.jsonl"
    for path, n, s in ((corpus, rows, seed), (validation, 200, seed + 1)):  # a small held-out set: evals stay cheap
        with path.open("w", encoding="utf-8") as f:
            for conv in conversations(words, n, s):
                f.write(json.dumps(conv) + "\n")
    run, config = work / "run", work / "pretrain.yaml"
    # Few, small evaluations: the time goes to steps (a generic corpus has no task to pick a best step by).
    config.write_text("training:\n  evals: 4\n  eval_tool_sample: 16\n  keep_best: eval_loss\n", encoding="utf-8")
    dsft = str(Path(sys.executable).parent / "dsft")
    cmd = [dsft, "train", str(config), "--model", str(base), "--train", str(corpus), "--validation", str(validation), "--out", str(run), "--overwrite",
           "--time-budget", f"{minutes}m", "--copy-augment", "0", "--seed", str(seed)]
    subprocess.run(cmd, check=True)
    store(run)
    report = json.loads((run / "run.json").read_text(encoding="utf-8"))
    info = {"corpus": {"module": "dsft.model.warm_corpus", "rows": rows, "seed": seed, "words": len(words)},
            "start": ("the shipped weights of the stages before" if resume
                      else "copy circuit (model/copy_circuit.py), seed 0"),
            "command": " ".join(["dsft", *cmd[1:]]).replace(str(work) + "/", "WORK/"),
            "config": config.read_text(encoding="utf-8"),
            "minutes": minutes, "steps": report.get("steps"), "seconds": report.get("seconds"),
            "kept": report.get("kept"), "train_loss": report.get("train_loss"), "eval_loss": report.get("eval_loss"),
            "last_eval": _last_eval(run / "metrics.jsonl"), "machine": _machine(),
            "vocabulary_sha256": vocabulary_hash(tokenizer), "dtype": "bfloat16"}
    if before is not None:
        earlier = before.pop("stages", [])
        info["stages"] = [*earlier, before]
        info["total_minutes"] = minutes + sum(st["minutes"] for st in info["stages"])
    PROVENANCE.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _last_eval(metrics: Path) -> dict:
    lines = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    evals = [m for m in lines if "eval_loss" in m]
    return {k: v for k, v in evals[-1].items() if k.startswith("eval_") or k == "step"} if evals else {}


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_implementation()} {platform.python_version()}"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Pretrain the embedded default on generic tool use and store it.")
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--rows", type=int, default=24000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--resume", action="store_true",
                    help="train the shipped weights further (use another --seed: new corpus rows)")
    a = ap.parse_args()
    print(json.dumps(pretrain(a.minutes, a.rows, a.seed, a.work, a.resume), indent=2))
