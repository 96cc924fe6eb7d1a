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

from dsft.data.conversation import Conversation, as_dict
from dsft.data.survey import survey
from dsft.errors import UserError

Counter = Callable[[Conversation], int]
APPROXIMATION = "estimated as UTF-8 bytes / 4 + 4 per message (no --tokenizer given)"


def approx_tokens(conv: Conversation | dict, tools_nbytes: int | None = None) -> int:
    """`tools_nbytes`: the serialized size of the tools when the caller already knows it."""
    conv = as_dict(conv)
    tools = conv.get("tools")
    if not tools:
        tools_nbytes = 0
    elif tools_nbytes is None:
        tools_nbytes = tools_size(tools)
    return survey(conv).approx_tokens(tools_nbytes)


def tools_size(tools: list) -> int:
    return len(orjson.dumps([t if type(t) is dict else t.model_dump() for t in tools]))


def tokenizer_counter(name: str, trust_remote_code: bool = False) -> Counter:
    """Exact counts with a Hugging Face tokenizer (local path, or a hub id when online), through the
    same template inputs the renderer uses."""
    from dsft.chat.render import template_inputs
    from dsft.model.load import load_tokenizer

    try:
        tok = load_tokenizer(name, trust_remote_code)
    except UserError as e:
        raise UserError(e.message, f"{e.fix}, or drop --tokenizer to use the estimate") from None

    from dsft.chat.detect import of
    from dsft.chat.encoder import RenderError, encode, prompt_text

    try:
        family, opts = of(tok)
    except UserError:
        family = None

    def count(conv: Conversation) -> int:
        if family is not None:  # what training renders, exactly
            try:
                return len(encode(conv, tok, family, opts).ids)
            except RenderError:  # nothing to train on (a prompt): its text still has a length
                try:
                    return len(tok(prompt_text(conv, tok, family, opts), add_special_tokens=False)["input_ids"])
                except RenderError:
                    pass
        if tok.chat_template:
            messages, tools = template_inputs(conv)
            return len(tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True)["input_ids"])
        text = "\n".join(m.content or "" for m in conv.messages)
        return len(tok(text)["input_ids"])

    return count
