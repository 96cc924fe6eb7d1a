"""`dsft model import FILE.gguf`: a GGUF model as a plain HF folder dsft can train from.

Why not use the GGUF directly: transformers reads a GGUF (`gguf_file=`) but dequantizes it into a
model that refuses `save_pretrained`, and its tokenizer drops the split llama.cpp runs (SmolLM2's
`smollm` pre-tokenizer isolates digits; transformers' copy groups them), so training would see
other ids than the GGUF's own users. Here the weights are dequantized once to float32 safetensors,
and the tokenizer is given the pre-tokenizer the file names (deploy/gguf_vocab.py), with the
file's chat template. `dsft_import.json` in the folder says where it came from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dsft.errors import UserError


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(path: Path) -> dict:
    """The file's architecture, pre-tokenizer and tensor types, or a UserError saying why it is no GGUF."""
    import gguf

    from dsft.deploy.to_gguf import field

    if not path.is_file():
        raise UserError(f"{path} does not exist", "give the path of a .gguf file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file (no GGUF magic at its start)",
                            "give a .gguf file written by llama.cpp's tools or `dsft export --format gguf`")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # a truncated or corrupt file: gguf raises ValueError, struct.error, ...
        raise UserError(f"{path} cannot be read as GGUF: {e}", "download or export the file again") from None
    return {"architecture": field(reader, "general.architecture"), "name": field(reader, "general.name"),
            "pre": field(reader, "tokenizer.ggml.pre"), "tokenizer": field(reader, "tokenizer.ggml.model"),
            "types": sorted({t.tensor_type.name for t in reader.tensors}), "tensors": len(reader.tensors)}


def import_gguf(path: Path, out: Path, dtype: str = "float32", force: bool = False) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.deploy.gguf_vocab import PRE_TYPES, with_split

    if dtype not in ("float32", "bfloat16"):
        raise UserError(f"--dtype {dtype} is not one dsft writes", "use float32 or bfloat16")
    header = read_header(path)
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} already exists and is not empty", "choose another --out, or pass --force")
    if header["tokenizer"] != "gpt2":
        raise UserError(f"{path.name} has a {header['tokenizer']!r} tokenizer; dsft imports byte-level BPE "
                        "('gpt2') GGUFs", "import the model from its HF folder instead")
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=getattr(torch, dtype))
    except (ValueError, KeyError, NotImplementedError, RuntimeError) as e:
        raise UserError(f"transformers cannot load the {header['architecture']!r} GGUF {path.name}: {e}",
                        "import the model from its HF folder instead") from None
    # The weights are dequantized already; what refuses saving is only the record that they came from
    # a GGUF (transformers' GGUF quantizer and the config's quantization_config).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    pre = header["pre"]
    record = {"source": str(path.resolve()), "sha256": _sha256(path), **header,
              "parameters": sum(p.numel() for p in model.parameters()), "dtype": dtype,
              "chat_template": bool(tok.chat_template)}
    if pre in PRE_TYPES:  # the split llama.cpp runs for this file, not transformers' approximation of it
        spec = with_split(json.loads((out / "tokenizer.json").read_text(encoding="utf-8")), pre)
        (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    else:
        record["note"] = (f"the file's pre-tokenizer {pre!r} is not one dsft knows; the tokenizer keeps "
                          "transformers' split, which may tokenize some text otherwise than llama.cpp")
    (out / "dsft_import.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
