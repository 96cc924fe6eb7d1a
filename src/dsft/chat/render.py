"""Conversation -> token ids + loss mask, through the tokenizer's own chat template.

The one renderer for training, evaluation and serving: training calls `render`, evaluation and
serving call `render_prompt`, and both go through `apply_chat_template` with the same messages,
so the text a model is trained on is byte for byte the text it is prompted with. The mask comes
from the template's `{% generation %}` markers (`return_assistant_tokens_mask`): it covers the
assistant's reply, its tool-call block and the end-of-turn EOS of every assistant turn with
weight 1, and nothing else.

Plain `text` examples (continued pretraining) bypass the template: BOS + text + EOS, all trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsft.data.conversation import Conversation


class RenderError(ValueError):
    """An example that cannot be trained on as rendered (e.g. nothing supervised survives truncation)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    ids: list[int]
    mask: list[int]  # 1 where the loss is taken

    @property
    def supervised(self) -> int:
        return sum(self.mask)

    def labels(self, ignore_index: int = -100) -> list[int]:
        return [i if m else ignore_index for i, m in zip(self.ids, self.mask)]


def template_inputs(conv: Conversation) -> tuple[list[dict], list[dict] | None]:
    """Canonical conversation -> (messages, tools) for chat templates: the OpenAI form with compact
    arguments (transformers drops the None-valued keys it contains before rendering)."""
    row = conv.to_openai(compact=True)
    return row["messages"], row.get("tools")


def render(conv: Conversation, tokenizer, max_length: int | None = None) -> Rendered:
    """Ids and loss mask of a whole training example; truncated from the right to `max_length`."""
    if conv.metadata.get("layout") == "text":
        text = "".join(m.content or "" for m in conv.messages)
        body = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
        mask = [0, *([1] * (len(ids) - 1))]
    else:
        messages, tools = template_inputs(conv)
        out = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    if max_length is not None and len(ids) > max_length:
        ids, mask = ids[:max_length], mask[:max_length]
    if not any(mask):
        why = f"after truncation to {max_length} tokens" if max_length else "(no assistant turn with weight 1)"
        raise RenderError(f"no supervised tokens {why}")
    return Rendered(ids, mask)


def render_prompt(conv: Conversation, tokenizer) -> list[int]:
    """Ids of the conversation so far plus the assistant prompt: what the model continues."""
    messages, tools = template_inputs(conv)
    out = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                        add_generation_prompt=True)
    return list(out["input_ids"])


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
