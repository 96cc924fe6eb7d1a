"""Token counts for length statistics and the too_short/too_long warnings.

Without a tokenizer dsft estimates: UTF-8 bytes / 4, plus 4 tokens per message for the role
markers, plus the tool schemas (which dsft's renderer puts in the system text). Byte-level BPE
vocabularies average about 4 bytes a token on English prose and code; the estimate is
documented as such in every report. `--tokenizer PATH_OR_ID` counts exactly, through the
model's own chat template when it has one.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from dsft.data.conversation import Conversation
from dsft.errors import UserError

Counter = Callable[[Conversation], int]
APPROXIMATION = "estimated as UTF-8 bytes / 4 + 4 per message (no --tokenizer given)"


def _nbytes(s: str | None) -> int:
    if not s:
        return 0
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def approx_tokens(conv: Conversation, tools_nbytes: int | None = None) -> int:
    """`tools_nbytes`: the serialized size of conv.tools when the caller already knows it."""
    n = 0
    for m in conv.messages:
        n += _nbytes(m.content) + _nbytes(m.reasoning) + 16
        for c in m.tool_calls or ():
            n += len(c.name) + len(orjson.dumps(c.arguments)) + 8
    if conv.tools:
        n += tools_nbytes if tools_nbytes is not None else tools_size(conv.tools)
    return (n + 3) // 4


def tools_size(tools) -> int:
    return len(orjson.dumps([t.model_dump() for t in tools]))


def tokenizer_counter(name: str, trust_remote_code: bool = False) -> Counter:
    """Exact counts with a Hugging Face tokenizer (local path, or a hub id when online), through the
    same template inputs the renderer uses."""
    from dsft.chat.render import template_inputs
    from dsft.model.load import load_tokenizer

    try:
        tok = load_tokenizer(name, trust_remote_code)
    except UserError as e:
        raise UserError(e.message, f"{e.fix}, or drop --tokenizer to use the estimate") from None

    def count(conv: Conversation) -> int:
        if tok.chat_template:
            messages, tools = template_inputs(conv)
            return len(tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True)["input_ids"])
        text = "\n".join(m.content or "" for m in conv.messages)
        return len(tok(text)["input_ids"])

    return count
