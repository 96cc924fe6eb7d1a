"""`dsft export`: a run (or registered version) as a standalone model.

--merge         the adapter folded into its base; safetensors in the HF layout, with the
                tokenizer, dsft's chat template and a model card (README.md with lineage).
--format gguf   a GGUF file for llama.cpp / Ollama and a Modelfile whose template speaks the
                same chat format. Written with the `gguf` package (llama.cpp's own gguf-py):
                llama and qwen2 architectures, f32/f16/q8_0. DeepSeek-V2/V3 (llama.cpp's
                `deepseek2`: MLA and MoE tensors) is refused with a clear error; merge, then use
                llama.cpp's convert_hf_to_gguf.py.
--quant awq|gptq  post-training quantisation needs a CUDA GPU (AutoAWQ / GPTQModel kernels):
                refused here with a clear error.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from dsft.chat.detect import recorded_family
from dsft.errors import UserError

GGUF_ARCHES = {"llama": "LLAMA", "qwen2": "QWEN2"}
GGUF_QUANTS = ("f32", "f16", "q8_0")


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


# ---------------------------------------------------------------- GGUF

def write_gguf(model_dir: Path, out_file: Path, quant: str = "f16") -> Path:
    """A merged llama/qwen2 model folder -> one GGUF file (read back and checked)."""
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    if quant not in GGUF_QUANTS:
        raise UserError(f"--quant {quant} is not a GGUF type dsft writes", f"use one of {', '.join(GGUF_QUANTS)}")
    config = AutoConfig.from_pretrained(model_dir)
    arch_name = GGUF_ARCHES.get(config.model_type)
    if arch_name is None:
        raise UserError(f"GGUF export supports {', '.join(GGUF_ARCHES)} models, not {config.model_type}",
                        "for DeepSeek-V2/V3 (llama.cpp's deepseek2: MLA + MoE) export --merge, then run llama.cpp's "
                        "convert_hf_to_gguf.py on the merged folder")
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tok = AutoTokenizer.from_pretrained(model_dir)
    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_dir.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or
                                    (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    _tokenizer(writer, tok, config.vocab_size)
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    if "lm_head.weight" not in tensors and getattr(config, "tie_word_embeddings", False):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    for hf_name, t in tensors.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"no GGUF name for tensor {hf_name}", "this architecture variant is not supported")
        data = t.to(torch.float32).numpy()
        if arch_name == "LLAMA" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            data = _permute(data, heads if "q_proj" in hf_name else kv_heads)  # llama.cpp's rotary layout
        kind = gguf.GGMLQuantizationType.F32
        if data.ndim == 2 and quant != "f32":
            if quant == "q8_0" and data.shape[-1] % 32 == 0:
                data, kind = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
            else:
                data, kind = data.astype(np.float16), gguf.GGMLQuantizationType.F16
        writer.add_tensor(name, data, raw_dtype=kind if kind == gguf.GGMLQuantizationType.Q8_0 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


def _permute(w, n_head: int):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tokenizer(writer, tok, n_vocab: int) -> None:
    """llama.cpp needs exactly one token per embedding row: unused rows get placeholder tokens, and
    tokens past the last row (e.g. the `<|endoftext|>` transformers' Qwen2 tokenizer adds by itself)
    are left out: the model can neither read nor produce them."""
    import gguf

    vocab = tok.get_vocab()
    by_id = sorted(((t, i) for t, i in vocab.items() if i < n_vocab), key=lambda kv: kv[1])
    taken = {i for _, i in by_id}
    by_id += [(f"[PAD{i}]", i) for i in range(n_vocab) if i not in taken]
    by_id.sort(key=lambda kv: kv[1])
    special = set(tok.all_special_ids) | {i for t, i in vocab.items() if t in (tok.get_added_vocab() or {})}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t for t, _ in by_id])
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in by_id])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"].get("merges", [])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    if tok.pad_token_id is not None:
        writer.add_pad_token_id(tok.pad_token_id)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)


def read_gguf(path: Path) -> dict[str, Any]:
    """The file read back: architecture, counts, a few fields (to prove it is well-formed)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    field = r.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode()
    return {"architecture": arch, "tensors": len(r.tensors), "tensor_names": [t.name for t in r.tensors],
            "tokens": len(r.fields["tokenizer.ggml.tokens"].data),
            "types": sorted({t.tensor_type.name for t in r.tensors})}


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


def modelfile(gguf: str, family: str) -> str | None:
    """Ollama's Modelfile for the run's format, or None where dsft has none (pre-V2.5 layouts)."""
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
            write_gguf(merged, target, quant or "f16")
        except UserError:
            shutil.rmtree(out, ignore_errors=True)
            raise
        result["gguf"] = str(target)
        result["check"] = {k: v for k, v in read_gguf(target).items() if k != "tensor_names"}
        text = modelfile(target.name, recorded_family(merged) or "deepseek_v3")
        if text is not None:
            (out / "Modelfile").write_text(text, encoding="utf-8")
            result["modelfile"] = str(out / "Modelfile")
    return result
