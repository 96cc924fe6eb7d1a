"""Every DeepSeek generation's chat format, and ChatML and Llama 3 for the non-DeepSeek bases, by name (the
registry `chat.family` and `--chat-family` choose from; docs/formats.md tabulates them)."""

from __future__ import annotations

from dsft.chat.encoder import Family
from dsft.chat.families.chatml import ChatML
from dsft.chat.families.dsml import V4, V32
from dsft.chat.families.legacy import LLM, Coder
from dsft.chat.families.llama3 import Llama3
from dsft.chat.families.v3 import R1, V25, V3Layout
from dsft.chat.families.v31 import V31

FAMILIES: dict[str, Family] = {f.name: f for f in (LLM(), Coder(), V25(), V3Layout(), V31(), R1(), V32(), V4(), ChatML(), Llama3())}


def get(name: str) -> Family:
    from dsft.chat.encoder import unknown_family

    if name not in FAMILIES:
        raise unknown_family(name, list(FAMILIES))
    return FAMILIES[name]
