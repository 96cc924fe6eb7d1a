"""Chat templates: the model's own when it can produce a loss mask, else a shipped training variant.

A template produces the loss mask only if it marks assistant output with `{% generation %}`.
Most shipped templates do not. dsft then uses its DeepSeek-V3 training variant for any
tokenizer that carries DeepSeek's chat tokens (DeepSeek-V2/V3, R1 and the R1-Distill models),
and refuses other templates by name rather than training on an all-zero mask. The template
chosen is saved with the run's tokenizer, so evaluation and serving render exactly as training did.
"""

from __future__ import annotations

import re
from importlib import resources

from dsft.errors import UserError

TEMPLATES = ("deepseek_v3",)
_GENERATION = re.compile(r"{%-?\s*generation\s*-?%}")


def load_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; dsft ships {', '.join(TEMPLATES)}")
    return (resources.files("dsft.chat") / "templates" / f"{name}.jinja").read_text(encoding="utf-8")


def training_template(tokenizer, name: str = "this model") -> tuple[str, str]:
    """(template, where it came from) for training with assistant-only loss."""
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if own and _GENERATION.search(own):
        return own, "the model's own (has generation markers)"
    if "<｜User｜>" in tokenizer.get_vocab():
        return load_template("deepseek_v3"), "dsft's DeepSeek-V3 training variant (the model's has no generation markers)"
    raise UserError(f"the chat template of {name} has no {{% generation %}} markers, so dsft cannot tell "
                    "which tokens are the assistant's", "add the markers to its chat_template (see "
                    "src/dsft/chat/templates/README.md) or use a DeepSeek-family tokenizer")
