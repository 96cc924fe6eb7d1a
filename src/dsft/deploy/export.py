"""`dsft export`: a run (or registered version) as a standalone model.

--merge         the adapter folded into its base; safetensors in the HF layout, with the
                tokenizer, dsft's chat template and a model card (README.md with lineage).
--format gguf   a GGUF file for llama.cpp / Ollama (deploy/to_gguf.py: llama, qwen2 and
                DeepSeek-V2/V3 as llama.cpp's `deepseek2`; f32/f16/q8_0), with the pre-tokenizer
                llama.cpp must run to give training's ids (deploy/gguf_vocab.py), and a
                Modelfile whose template speaks the run's chat format.
--quant awq|gptq  post-training quantisation needs a CUDA GPU (AutoAWQ / GPTQModel kernels):
                refused here with a clear error.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from dsft.chat.detect import recorded_family
from dsft.deploy import to_gguf
from dsft.errors import UserError


def resolve_source(ref: str) -> tuple[Path, dict[str, Any]]:
    """A run folder, or a registered NAME:VERSION / NAME@ALIAS (with its lineage for the card)."""
    folder = Path(ref)
    if folder.is_dir():
        return folder, {"source": str(folder.resolve())}
    from dsft.registry import db, store
    from dsft.registry.tasks import home_path

    with db.session() as s:
        mv = store.resolve(s, ref)
        return home_path(mv.artifact), {"source": f"{mv.name}:{mv.version}", **store.version_dict(mv)}


def merge(source: Path, out: Path, lineage: dict[str, Any]) -> Path:
    """Adapter + base -> one model folder (a full finetune is copied as it is)."""
    import torch

    from dsft.eval.tooluse import load_for_eval

    model, tokenizer = load_for_eval(str(source))
    if hasattr(model, "merge_and_unload"):
        from dsft.train.targets import exact_targets

        with exact_targets(model.base_model.model):
            model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    for p in model.parameters():
        if not torch.isfinite(p).all():
            raise RuntimeError("non-finite weights after merging: refusing to export")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card(source, lineage, model.config.model_type), encoding="utf-8")
    return out


def model_card(source: Path, lineage: dict[str, Any], arch: str) -> str:
    metrics = lineage.get("metrics") or {}
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, int | float))
    return f"""---
library_name: transformers
tags: [dsft, {arch}]
---
# {lineage.get('source', source.name)}

Merged and exported by dsft on {time.strftime('%Y-%m-%d')}.

- base model: {lineage.get('base_model', '(see config.json)')}
- dataset: {lineage.get('dataset_id') or 'n/a'}
- training config hash: {lineage.get('config_hash') or 'n/a'}
- adapter/run sha256: {lineage.get('artifact_sha256') or 'n/a'}
- chat template: dsft's, saved with the tokenizer (`chat_template.jinja`); tool calls use
  DeepSeek's `<｜tool▁calls▁begin｜>` markers.

| metric | value |
|---|---|
{rows or '| (none recorded) | |'}
"""


def quantize(kind: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"--quant {kind} needs a CUDA GPU: AutoAWQ and GPTQModel quantise with GPU kernels",
                        "run this export on a GPU machine, or use --format gguf --quant q8_0 for a CPU-friendly file")
    raise UserError(f"--quant {kind} is not wired up in this dsft yet", "use --format gguf --quant q8_0")


# ---------------------------------------------------------------- GGUF (deploy/to_gguf.py)

MODELFILE = '''FROM ./{gguf}
# dsft's {family} chat format (docs/formats.md), tools-free: system text first, then
# <｜User｜>/<｜Assistant｜> turns, EOS after each reply.
TEMPLATE """{{{{- if .System }}}}{{{{ .System }}}}{{{{ end }}}}
{{{{- range .Messages }}}}
{{{{- if eq .Role "user" }}}}<｜User｜>{{{{ .Content }}}}
{{{{- else if eq .Role "assistant" }}}}{history}{{{{ .Content }}}}<｜end▁of▁sentence｜>
{{{{- end }}}}
{{{{- end }}}}{prompt}"""
PARAMETER stop "<｜end▁of▁sentence｜>"
PARAMETER stop "<｜User｜>"
PARAMETER temperature 0
'''
# (opener of an earlier reply, generation prompt) per family with V3's tokens; the others have no Modelfile yet
MODELFILE_TURNS = {"deepseek_v3": ("<｜Assistant｜>", "<｜Assistant｜>"), "deepseek_v25": ("<｜Assistant｜>", "<｜Assistant｜>"),
                   "deepseek_r1": ("<｜Assistant｜>", "<｜Assistant｜><think>\n"),
                   "deepseek_v31": ("<｜Assistant｜></think>", "<｜Assistant｜></think>"),
                   "deepseek_v32": ("<｜Assistant｜></think>", "<｜Assistant｜></think>"),
                   "deepseek_v4": ("<｜Assistant｜></think>", "<｜Assistant｜></think>")}


CHATML_MODELFILE = '''FROM ./{gguf}
# dsft's chatml format (docs/formats.md), tools-free: <|im_start|>ROLE ... <|im_end|> turns.
TEMPLATE """{{{{- if .System }}}}<|im_start|>system
{{{{ .System }}}}<|im_end|>
{{{{ end }}}}
{{{{- range .Messages }}}}<|im_start|>{{{{ .Role }}}}
{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}<|im_start|>assistant
"""
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|im_start|>"
PARAMETER temperature 0
'''


LLAMA3_MODELFILE = '''FROM ./{gguf}
# dsft's llama3 format (docs/formats.md), tools-free: header-framed turns, <|eot_id|> after each.
TEMPLATE """<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

{{{{ if .System }}}}{{{{ .System }}}}{{{{ end }}}}<|eot_id|>
{{{{- range .Messages }}}}<|start_header_id|>{{{{ .Role }}}}<|end_header_id|>

{{{{ .Content }}}}<|eot_id|>
{{{{- end }}}}<|start_header_id|>assistant<|end_header_id|>

"""
PARAMETER stop "<|eot_id|>"
PARAMETER stop "<|eom_id|>"
PARAMETER temperature 0
'''


def modelfile(gguf: str, family: str) -> str | None:
    """Ollama's Modelfile for the run's format, or None where dsft has none (pre-V2.5 layouts)."""
    if family == "chatml":
        return CHATML_MODELFILE.format(gguf=gguf)
    if family == "llama3":  # llama.cpp adds <|begin_of_text|> itself (the GGUF's BOS)
        return LLAMA3_MODELFILE.format(gguf=gguf)
    if family not in MODELFILE_TURNS:
        return None
    history, prompt = MODELFILE_TURNS[family]
    return MODELFILE.format(gguf=gguf, family=family, history=history, prompt=prompt)


def export(ref: str, out: Path, merge_only: bool = True, fmt: str = "safetensors", quant: str | None = None) -> dict:
    source, lineage = resolve_source(ref)
    if quant in ("awq", "gptq"):
        quantize(quant)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty", "choose another --out")
    merged = out if fmt == "safetensors" else out / "merged"
    merge(source, merged, lineage)
    result: dict[str, Any] = {"merged": str(merged)}
    if fmt == "gguf":
        target = out / f"{source.name}.{quant or 'f16'}.gguf"
        try:
            result.update(to_gguf.write(merged, target, quant or "f16"))
        except UserError:
            shutil.rmtree(out, ignore_errors=True)
            raise
        result["gguf"] = str(target)
        result["check"] = {k: v for k, v in to_gguf.read(target).items() if k != "tensor_names"}
        text = modelfile(target.name, recorded_family(merged) or "deepseek_v3")
        if text is not None:
            (out / "Modelfile").write_text(text, encoding="utf-8")
            result["modelfile"] = str(out / "Modelfile")
    return result
