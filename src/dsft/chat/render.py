"""Conversation -> token ids + loss mask, in the format of the model's DeepSeek generation.

The one renderer for training, evaluation and serving: training calls `render`, evaluation and
serving call `render_prompt`, both through the family the tokenizer speaks (`chat/detect.py`;
recorded in every run dsft saves), so the text a model is trained on is byte for byte the text
it is prompted with. The mask covers the assistant's reply, its tool-call markup, its reasoning
where the family trains it, and its end token (`chat/encoder.py`).

Plain `text` examples (continued pretraining) bypass the format: BOS + text + EOS, all trained.
"""

from __future__ import annotations

from dsft.chat.encoder import Rendered, RenderError, encode, encode_prompt
from dsft.data.conversation import Conversation

__all__ = ["RenderError", "Rendered", "render", "render_prompt", "show", "template_inputs"]


def template_inputs(conv: Conversation, compact: bool = True) -> tuple[list[dict], list[dict] | None]:
    """Canonical conversation -> (messages, tools) for Jinja chat templates (exports, other tools):
    the OpenAI form, arguments compact (V3's layout) or as clients send them (`compact=False`)."""
    row = conv.to_openai(compact=compact)
    return row["messages"], row.get("tools")


def render(conv: Conversation, tokenizer, max_length: int | None = None) -> Rendered:
    """Ids and loss mask of a whole training example; truncated from the right to `max_length`."""
    from dsft.chat.detect import of

    family, opts = of(tokenizer)
    return encode(conv, tokenizer, family, opts, max_length)


def render_prompt(conv: Conversation, tokenizer) -> list[int]:
    """Ids of the conversation so far plus the assistant prompt: what the model continues."""
    from dsft.chat.detect import of

    family, opts = of(tokenizer)
    return encode_prompt(conv, tokenizer, family, opts)


def show(rendered: Rendered, tokenizer) -> str:
    """The rendered text with trained spans marked «like this», for eyes (`dsft chat render`)."""
    out, trained = [], False
    for token_id, m in zip(rendered.ids, rendered.mask):
        if m and not trained:
            out.append("«")
        elif not m and trained:
            out.append("»")
        trained = bool(m)
        out.append(tokenizer.decode([token_id]))
    if trained:
        out.append("»")
    return "".join(out)
