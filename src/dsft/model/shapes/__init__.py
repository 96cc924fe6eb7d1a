"""The sizes of the DeepSeek models the guide names, shipped so `dsft estimate` answers offline.

Each `<org>__<name>.json` holds the architecture fields of that model's official `config.json`
(sizes only: no weights, no tokenizer) and the source they were copied from. `shipped(id)` builds
a transformers config from one; an id not listed here is read from its own config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).parent
# Releases of the same architecture with the same sizes (chat/base/instruct, later checkpoints).
SAME_SHAPE = {
    "deepseek-ai/DeepSeek-V2-Lite-Chat": "deepseek-ai/DeepSeek-V2-Lite",
    "deepseek-ai/deepseek-coder-1.3b-base": "deepseek-ai/deepseek-coder-1.3b-instruct",
    "deepseek-ai/deepseek-coder-6.7b-base": "deepseek-ai/deepseek-coder-6.7b-instruct",
    "deepseek-ai/deepseek-coder-33b-base": "deepseek-ai/deepseek-coder-33b-instruct",
    "deepseek-ai/DeepSeek-V3-Base": "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-V3-0324": "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-V3.1": "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1": "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1-0528": "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-V4-Flash-Base": "deepseek-ai/DeepSeek-V4-Flash",
}


def ids() -> list[str]:
    return sorted([p.stem.replace("__", "/") for p in FOLDER.glob("*.json")] + list(SAME_SHAPE))


def shipped(name: str):
    """The transformers config of hub id `name` from the shipped shapes, or None."""
    name = SAME_SHAPE.get(name, name)
    path = FOLDER / (name.replace("/", "__") + ".json")
    if "/" not in name or not path.is_file():
        return None
    from transformers import AutoConfig

    fields = dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    return AutoConfig.for_model(fields.pop("model_type"), **fields)
