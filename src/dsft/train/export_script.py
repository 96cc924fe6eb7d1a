"""`dsft export-script RUN`: the guide's phase-2 "generate scripts", from a real run.

Writes `train.py` (transformers + peft + torch only, no dsft) equivalent to the run's resolved
config: same base model, chat template (read from the run's saved tokenizer), assistant-only
loss, LoRA targets resolved to full module names, hyperparameters and seed; and
`requirements.txt` pinned to the versions this run used. Batching is plain (shuffled, padded),
so throughput is lower than dsft's length-grouped loop; the learning recipe is the same.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dsft.chat.detect import recorded_family
from dsft.chat.template import TEMPLATES
from dsft.errors import UserError

SCRIPT = '''#!/usr/bin/env python
"""Standalone training script exported by dsft from run {run_name!r}.

    pip install -r requirements.txt
    python train.py            # writes ./out

Data: chat JSON Lines, OpenAI's layout or dsft's canonical one (`dsft data prepare` output).
"""
import json
import math
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

BASE_MODEL = {base!r}
TOKENIZER = {tokenizer!r}  # the run's tokenizer: carries the chat template used in training
TRAIN_FILES = {train!r}
METHOD = {method!r}
LORA_TARGETS = {targets!r}
LORA_R, LORA_ALPHA, LORA_DROPOUT = {r}, {alpha}, {dropout}
EPOCHS, LR, BATCH, WARMUP_RATIO, WEIGHT_DECAY = {epochs}, {lr}, {batch}, {warmup}, {wd}
MAX_LENGTH, SEED, MAX_GRAD_NORM = {max_length}, {seed}, {clip}


def template_messages(row):
    messages = []
    for m in row["messages"]:
        msg = {{k: v for k, v in m.items() if k in ("role", "content", "tool_call_id", "name", "weight") and v is not None}}
        for c in m.get("tool_calls") or ():
            fn = c.get("function", c)  # OpenAI layout or dsft's canonical one
            args = fn.get("arguments", {{}})
            args = json.loads(args) if isinstance(args, str) else args
            msg.setdefault("tool_calls", []).append({{"id": c.get("id", ""), "type": "function", "function": {{
                "name": fn["name"], "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":"))}}}})
        messages.append(msg)
    tools = [t if "function" in t else {{"type": "function", "function": t}} for t in row.get("tools") or ()] or None
    return messages, tools


def main():
    random.seed(SEED)
    torch.manual_seed(SEED)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL, use_safetensors=True, dtype=torch.float32)
    if METHOD != "full":
        from peft import LoraConfig, get_peft_model
        # peft 0.21 remaps *.gate_proj/up_proj/down_proj onto fused MoE experts by config.model_type;
        # hiding the type while wrapping keeps exactly LORA_TARGETS (the dense and shared-expert MLPs).
        config, model_type = model.config, model.config.model_type
        config.model_type = model_type + "+exact-targets"
        model = get_peft_model(model, LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                                                 target_modules=LORA_TARGETS, use_dora=METHOD == "dora",
                                                 task_type="CAUSAL_LM"))
        config.model_type = model_type
    examples = []
    for path in TRAIN_FILES:
        for line in open(path, encoding="utf-8"):
            if line.strip():
                messages, tools = template_messages(json.loads(line))
                out = tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
                ids, mask = out["input_ids"][:MAX_LENGTH], out["assistant_masks"][:MAX_LENGTH]
                if any(mask):
                    examples.append((ids, [i if k else -100 for i, k in zip(ids, mask)]))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    steps = max(1, math.ceil(len(examples) / BATCH * EPOCHS))
    warm = int(steps * WARMUP_RATIO)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    order = [i for _ in range(math.ceil(EPOCHS)) for i in random.sample(range(len(examples)), len(examples))]
    model.train()
    for step in range(steps):
        batch = [examples[i] for i in order[step * BATCH:(step + 1) * BATCH]]
        if not batch:
            break
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (x, y) in enumerate(batch):
            ids[row, :len(x)], labels[row, :len(y)], attn[row, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        sched.step()
        opt.zero_grad()
        print(json.dumps({{"step": step + 1, "loss": round(loss.item(), 4)}}), flush=True)
    model.save_pretrained("out", safe_serialization=True)
    tok.save_pretrained("out")


if __name__ == "__main__":
    main()
'''

PACKAGES = ("torch", "transformers", "tokenizers", "peft", "safetensors")


def export(run: Path, out: Path) -> list[Path]:
    from dsft.train import config as cfgmod

    if not (run / "config.yaml").is_file():
        raise UserError(f"{run} is not a dsft run folder (no config.yaml)", "give the --out of a `dsft train` run")
    cfg = cfgmod.load(run / "config.yaml")
    if cfg.method not in ("lora", "dora", "full"):
        raise UserError(f"export-script supports lora, dora and full runs, not {cfg.method}",
                        "retrain with --method lora to get a standalone script")
    family = recorded_family(run)
    if family is not None and family not in TEMPLATES:
        raise UserError(f"{run} speaks {family}, which has no Jinja chat template (DeepSeek ships only a Python "
                        "encoder for it), and the standalone script renders its data with the run's template",
                        f"use the run with dsft itself (`dsft eval`, `dsft serve`, `dsft export`), or export a run "
                        f"of a family with a template ({', '.join(TEMPLATES)})")
    targets: list[str] = []
    if cfg.method != "full":
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from dsft.train.targets import resolve

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(cfg.model.name_or_path))
        targets = resolve(model, cfg.lora.targets)
    files = cfg.data.train or [f for phase in cfg.data.curriculum for f in phase.train]
    t = cfg.training
    text = SCRIPT.format(run_name=run.name, base=cfg.model.name_or_path, tokenizer=str(run.resolve()),
                         train=[str(Path(f).resolve()) for f in files], method=cfg.method, targets=targets,
                         r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout, epochs=t.epochs,
                         lr=t.learning_rate, batch=t.batch_size, warmup=t.warmup_ratio, wd=t.weight_decay,
                         max_length=cfg.data.max_length, seed=t.seed, clip=t.max_grad_norm)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.py").write_text(text, encoding="utf-8")
    pins = []
    for name in PACKAGES:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    (out / "requirements.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    return [out / "train.py", out / "requirements.txt"]
