"""dsft's Jinja chat templates, for what reads a template instead of dsft's encoder (exports:
merged models, GGUF, vLLM). Each renders exactly as `chat/encoder.py` does for its family; the
parity is tested. V3.2 and V4 have none: DeepSeek ships only a Python encoder for them, and so
does dsft (vLLM runs its own encoder for them; docs/formats.md)."""

from __future__ import annotations

from importlib import resources

TEMPLATES = ("deepseek_llm", "deepseek_coder", "deepseek_v25", "deepseek_v3", "deepseek_r1", "deepseek_v31", "chatml", "llama3")
# V2.5 is V3's layout keeping only the last system message: V3's file with its one switch flipped,
# so the two cannot drift apart.
_DERIVED = {"deepseek_v25": ("deepseek_v3", "{%- set last_system_only = false -%}", "{%- set last_system_only = true -%}")}


def load_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; dsft ships {', '.join(TEMPLATES)}")
    source, old, new = _DERIVED.get(name, (name, "", ""))
    text = (resources.files("dsft.chat") / "templates" / f"{source}.jinja").read_text(encoding="utf-8")
    if old:
        assert old in text, f"{source}.jinja lost the switch {name} is derived by"
        text = text.replace(old, new, 1)
    return text
