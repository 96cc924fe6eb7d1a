"""Chat templates shipped with dsft (see templates/README.md for why each exists)."""

from __future__ import annotations

from importlib import resources

TEMPLATES = ("deepseek_v3",)


def load_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; dsft ships {', '.join(TEMPLATES)}")
    return (resources.files("dsft.chat") / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
