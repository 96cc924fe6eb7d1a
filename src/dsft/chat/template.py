"""dsft's Jinja chat templates, for what reads a template instead of dsft's encoder (exports:
merged models, GGUF, vLLM). Each renders exactly as `chat/encoder.py` does for its family; the
parity is tested. V3's, R1's and V3.1's exist (docs/formats.md); other families export the model's own."""

from __future__ import annotations

from importlib import resources

TEMPLATES = ("deepseek_v3", "deepseek_r1", "deepseek_v31")


def load_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; dsft ships {', '.join(TEMPLATES)}")
    return (resources.files("dsft.chat") / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
