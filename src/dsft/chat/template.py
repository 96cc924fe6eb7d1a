"""dsft's Jinja chat templates, for what reads a template instead of dsft's encoder (exports:
merged models, GGUF, vLLM). Each renders exactly as `chat/encoder.py` does for its family; the
parity is tested. Only V3's exists yet (docs/formats.md)."""

from __future__ import annotations

from importlib import resources

TEMPLATES = ("deepseek_v3",)


def load_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; dsft ships {', '.join(TEMPLATES)}")
    return (resources.files("dsft.chat") / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
