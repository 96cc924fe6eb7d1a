"""Real (non-pad) training tokens/s: the guide's recipe vs TRL's SFTTrainer vs dsft, one run.

    python benchmarks/train_throughput.py [--examples 800] [--threads 2]

Same tiny DeepSeek-V3 model (built locally, seed 0), same generated LightDom tool-use data
rendered by dsft's renderer, same method (full finetune) and micro-batch size:
  (a) the guide's recipe (section 3.3): pad_token = eos_token, tokenize with
      padding="max_length" (to the model's 2048 positions; the guide uses 4096), labels =
      input_ids, transformers Trainer;
  (b) TRL SFTTrainer on the same pre-tokenized examples (assistant-only labels), dynamic
      padding, each sampling strategy tried (random, group_by_length); the best is reported;
  (c) dsft's trainer (length-grouped batches, assistant-only loss).
Each trains for the same number of examples; tokens/s counts only non-pad tokens. The last
line is one JSON object: vs_guide, vs_trl (dsft's tokens/s over theirs), pad_fraction (dsft's).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _examples(model_dir: Path, n: int, seed: int):
    from transformers import AutoTokenizer

    from dsft.data.generate import generate, load_scenarios
    from dsft.data.pipeline import to_conversation
    from dsft.train.batching import tokenize

    rows = generate(load_scenarios(), n, seed=seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    examples, _ = tokenize([to_conversation(r) for r in rows], tok, 2048)
    return rows, examples, tok


def guide_recipe(model_dir: Path, examples, tok, batch: int, max_examples: int, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tok.pad_token = tok.eos_token  # the guide's line
    texts = [tok.decode(e.ids) for e in examples[:max_examples]]
    enc = tok(texts, padding="max_length", max_length=2048, truncation=True, add_special_tokens=False)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    real = sum(sum(m) for m in enc["attention_mask"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(work / "guide"), per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=2e-3, logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"tokens": real, "seconds": seconds, "tokens_per_s": real / seconds,
            "pad_fraction": 1 - real / (len(texts) * 2048)}


def trl_best(model_dir: Path, examples, tok, batch: int, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_dict({"input_ids": [e.ids for e in examples], "labels": [e.labels for e in examples]})
    real = sum(len(e.ids) for e in examples)
    results = {}
    for strategy in ("random", "group_by_length"):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        args = SFTConfig(output_dir=str(work / f"trl-{strategy}"), per_device_train_batch_size=batch,
                         num_train_epochs=1, learning_rate=2e-3, logging_steps=1000, save_strategy="no",
                         report_to=[], use_cpu=True, disable_tqdm=True, max_length=2048,
                         train_sampling_strategy=strategy)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        results[strategy] = {"tokens": real, "seconds": seconds, "tokens_per_s": real / seconds}
        print(f"  TRL {strategy}: {real / seconds:,.0f} tokens/s")
    best = max(results, key=lambda k: results[k]["tokens_per_s"])
    return {**results[best], "setting": best}


def dsft_run(model_dir: Path, rows, batch: int, work: Path) -> dict:
    from dsft.train.config import load
    from dsft.train.trainer import train

    data = work / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = load(None, {"model.name_or_path": str(model_dir), "data.train": [str(data)], "data.val_ratio": 0.0,
                      "output.dir": str(work / "dsft"), "method": "full", "training.epochs": 1,
                      "training.learning_rate": 2e-3, "training.batch_size": batch, "training.log_every": 1000})
    r = train(cfg)
    return {"tokens": r.tokens, "seconds": r.seconds, "tokens_per_s": r.tokens_per_s, "pad_fraction": r.pad_fraction}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=800)
    ap.add_argument("--guide-examples", type=int, default=48, help="The guide's recipe is slow: fewer examples.")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    import torch

    from dsft.model.tiny import TinySpec, build

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build(work / "tiny", TinySpec())
        rows, examples, tok = _examples(model_dir, args.examples, seed=7)
        print(f"{len(examples)} examples, mean {sum(len(e.ids) for e in examples) / len(examples):.1f} tokens; "
              f"{args.threads} threads")
        ours = dsft_run(model_dir, rows, args.batch, work)
        print(f"dsft: {ours['tokens_per_s']:,.0f} tokens/s, pad fraction {ours['pad_fraction']:.2%}")
        trl = trl_best(model_dir, examples, tok, args.batch, work)
        print(f"TRL SFTTrainer (best: {trl['setting']}): {trl['tokens_per_s']:,.0f} tokens/s")
        guide = guide_recipe(model_dir, examples, tok, args.batch, args.guide_examples, work)
        print(f"guide recipe: {guide['tokens_per_s']:,.0f} real tokens/s, pad fraction {guide['pad_fraction']:.2%}")
    print(json.dumps({"vs_guide": round(ours["tokens_per_s"] / guide["tokens_per_s"], 2),
                      "vs_trl": round(ours["tokens_per_s"] / trl["tokens_per_s"], 3),
                      "pad_fraction": round(ours["pad_fraction"], 4),
                      "dsft_tokens_per_s": round(ours["tokens_per_s"]), "trl_tokens_per_s": round(trl["tokens_per_s"]),
                      "trl_setting": trl["setting"], "guide_tokens_per_s": round(guide["tokens_per_s"], 1),
                      "examples": len(examples), "threads": args.threads}))


if __name__ == "__main__":
    main()
