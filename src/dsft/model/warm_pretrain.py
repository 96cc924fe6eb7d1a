"""How the embedded default's shipped weights are made: pretraining on generic tool use.

Why a module of its own: making the weights needs the model builder (model/tiny.py) and `dsft
train`, while the builder needs only to load them (model/warm_start.py); kept apart, neither
imports the other's caller. Two stages made the shipped weights, both recorded in their
provenance: `python -m dsft.model.warm_pretrain --minutes 40`, then `--resume --seed 1 --minutes 75
--rows 36000` (further training on new rows). The corpus and the recipe are functions of their
seeds; the step count, fitted to the time, is the machine's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from dsft.model.warm_start import FOLDER, PROVENANCE, WEIGHTS, provenance, vocabulary_hash


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
