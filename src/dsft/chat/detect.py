"""Which chat format (a DeepSeek generation's, ChatML or Llama 3) a tokenizer's model speaks, and where that choice is kept.

The family is told, in order, by: an explicit choice (`chat.family`, `--chat-family`); the one a
dsft run or tiny model recorded in its `tokenizer_config.json` (`chat_family`, so a served or
evaluated run renders as it was trained); the model's own chat template (each generation's
template has lines no other has); the model's architecture and name (V3.2 and V4 ship no
template); DeepSeek's chat tokens in the vocabulary (V3's layout, dsft's default since its first
version). A tokenizer none of these tells is an error that lists the families.
"""

from __future__ import annotations

import json
from pathlib import Path

from dsft.chat.encoder import Family, Options
from dsft.errors import UserError

FAMILY_KEY, OPTIONS_KEY = "chat_family", "chat_options"

# (a line only that generation's template holds, family), checked in order.
_TEMPLATE_MARKS = (
    ("DSML", "deepseek_v4"),
    ("'<｜Assistant｜></think>'", "deepseek_v31"),
    ("<think>\\n", "deepseek_r1"),
    ("<think>\n", "deepseek_r1"),
    ("split('</think>')", "deepseek_r1"),
    ("### Instruction:", "deepseek_coder"),
    ("'Assistant: '", "deepseek_llm"),
    ("is_first_sp", "deepseek_v3"),
    ("ns.system_prompt = message['content']", "deepseek_v25"),
    ("<|im_start|>", "chatml"),  # last: a DeepSeek template never holds them
    ("<|start_header_id|>", "llama3"),
)
_NAME_MARKS = (("v3.2", "deepseek_v32"), ("v3_2", "deepseek_v32"), ("v4", "deepseek_v4"), ("v3.1", "deepseek_v31"),
               ("r1", "deepseek_r1"), ("coder-v2", "deepseek_llm"), ("v2-lite", "deepseek_llm"),
               ("v2-chat", "deepseek_llm"), ("coder", "deepseek_coder"), ("llm-", "deepseek_llm"),
               ("v2.5", "deepseek_v25"))


_MODEL_TYPES = {"deepseek_v32": "deepseek_v32", "deepseek_v4": "deepseek_v4"}  # shipped without templates


def detect(tokenizer, name: str = "", override: str | None = None, model_type: str | None = None) -> Family:
    from dsft.chat.families import FAMILIES, get

    if override:
        return get(override)
    recorded = getattr(tokenizer, "init_kwargs", {}).get(FAMILY_KEY)
    if recorded:
        return get(recorded)
    template = tokenizer.chat_template if isinstance(getattr(tokenizer, "chat_template", None), str) else ""
    for mark, family in _TEMPLATE_MARKS:
        if mark in template:
            return FAMILIES[family]
    if model_type in _MODEL_TYPES:
        return FAMILIES[_MODEL_TYPES[model_type]]
    lowered = (name or getattr(tokenizer, "name_or_path", "") or "").lower()
    if "deepseek" in lowered:
        for mark, family in _NAME_MARKS:
            if mark in lowered.rsplit("/", 1)[-1]:
                return FAMILIES[family]
    if "<｜User｜>" in tokenizer.get_vocab():
        return FAMILIES["deepseek_v3"]
    raise UserError(f"cannot tell which chat format {name or 'this model'} speaks (DeepSeek's, ChatML or Llama 3)",
                    f"set chat.family (or --chat-family) to one of: {', '.join(FAMILIES)}")


def record(tokenizer, family: Family, opts: Options) -> None:
    """Keep the choice with the tokenizer: `save_pretrained` writes init kwargs to tokenizer_config.json."""
    tokenizer.init_kwargs[FAMILY_KEY] = family.name
    tokenizer.init_kwargs[OPTIONS_KEY] = {"thinking": opts.thinking, "reasoning_turns": opts.reasoning_turns,
                                          "reasoning_effort": opts.reasoning_effort}


def recorded_family(folder: Path) -> str | None:
    """The family `record` saved with a folder's tokenizer, read without loading the tokenizer."""
    saved = Path(folder) / "tokenizer_config.json"
    return json.loads(saved.read_text(encoding="utf-8")).get(FAMILY_KEY) if saved.is_file() else None


def of(tokenizer) -> tuple[Family, Options]:
    """The family and options a tokenizer renders with (recorded, else detected with defaults)."""
    from dsft.chat.encoder import options_from

    family = detect(tokenizer)
    return family, options_from(getattr(tokenizer, "init_kwargs", {}).get(OPTIONS_KEY))
