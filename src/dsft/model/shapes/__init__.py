"""The sizes of the DeepSeek models the guide names, shipped so `dsft estimate` answers offline.

Each `<org>__<name>.json` holds the architecture fields of that model's official `config.json`
(sizes only: no weights, no tokenizer) and the source they were copied from. `shipped(id)` builds
a transformers config from one; an id not listed here is read from its own config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).parent


def ids() -> list[str]:
    return sorted(p.stem.replace("__", "/") for p in FOLDER.glob("*.json"))


def shipped(name: str):
    """The transformers config of hub id `name` from the shipped shapes, or None."""
    path = FOLDER / (name.replace("/", "__") + ".json")
    if "/" not in name or not path.is_file():
        return None
    from transformers import AutoConfig

    fields = dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    return AutoConfig.for_model(fields.pop("model_type"), **fields)
