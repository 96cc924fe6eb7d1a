"""DeepSeek's chat formats as code: a conversation -> text pieces -> token ids and loss mask.

Each DeepSeek generation speaks its own format (`chat/families/`; the table is docs/formats.md),
and DeepSeek ships its newest ones (V3.2, V4) only as Python encoders, not Jinja. So dsft renders
every family in Python, once, for training, evaluation and serving alike:

- a `Family` turns a conversation into `Piece`s, text marked trained or not (the assistant's reply,
  its tool-call markup, its reasoning where the family trains it, its end token);
- `encode` joins the pieces, tokenizes the text once (so token boundaries are the tokenizer's,
  exactly as in the official encoders, which also render text first) and marks every token that
  overlaps a trained piece;
- `encode_prompt` renders the conversation so far plus the family's generation prompt: what a
  served model continues. Training text is the prompt text followed by the reply (tested per
  family), so a model is prompted exactly as it was trained.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsft.chat.parse import ParsedTurn, parse_assistant, split_reasoning
from dsft.errors import UserError

if TYPE_CHECKING:
    from dsft.data.conversation import Conversation, Message, Tool, ToolCall

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
THINK, END_THINK = "<think>", "</think>"


class RenderError(ValueError):
    """An example that cannot be trained on as rendered (e.g. nothing supervised survives truncation)."""


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    trained: bool = False


@dataclass(frozen=True, slots=True)
class Rendered:
    ids: list[int]
    mask: list[int]  # 1 where the loss is taken

    @property
    def supervised(self) -> int:
        return sum(self.mask)

    def labels(self, ignore_index: int = -100) -> list[int]:
        return [i if m else ignore_index for i, m in zip(self.ids, self.mask)]


@dataclass(frozen=True, slots=True)
class Options:
    """How a family renders: `thinking` asks reasoning families for their thinking mode (V3.1,
    V3.2, V4 have both); `reasoning_turns` "last" follows the official encoders (only the reply
    after the last user turn shows its reasoning), "all" trains the reasoning of every turn."""

    thinking: bool = False
    reasoning_turns: str = "last"
    reasoning_effort: str | None = None  # V4: "max" (its preview encoder's one level)


class Family:
    """One DeepSeek generation's format. A subclass implements `pieces` (and `parse_reply` when its
    replies are not V3's layout); the class attributes say what the format can express."""

    name: str = ""
    generations: str = ""  # the models that speak it, for errors and docs
    eos: str = EOS
    tools: bool = True  # can it express tool calls at all?
    reasoning: bool = False  # does it have a reasoning (thinking) channel?
    thinking_default: bool = False
    tool_parser: str | None = None  # vLLM's parser for this format
    # Serving: the text that opens a tool-call block (streamed content stops there), the text a
    # forced call (tool_choice) starts with, and what follows a function's name in it.
    calls_open: str = "<｜tool▁calls▁begin｜>"
    forced_call: str = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
    after_name: str = "\n"
    parallel_calls: bool = True  # can one turn hold several calls?
    text_before_calls: bool = True  # can a calling turn hold text before its calls?
    special_tokens: tuple[str, ...] = ()  # beyond V3's chat tokens, for `dsft model tiny --family`

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        """The conversation as pieces; with `prompt`, followed by the generation prompt (what comes
        before the next assistant reply) instead of ending after the last message."""
        raise NotImplementedError

    def parse(self, text: str, id_prefix: str = "call_") -> ParsedTurn:
        """Generated text -> reasoning (for a family that has it), content and calls."""
        if not self.reasoning:
            return self.parse_reply(text, id_prefix)
        reasoning, rest = split_reasoning(text.split(EOS, 1)[0])
        turn = self.parse_reply(rest, id_prefix)
        turn.reasoning = reasoning
        return turn

    def parse_reply(self, text: str, id_prefix: str) -> ParsedTurn:
        """The reply after any reasoning: V3's tool-call layout unless the family has its own."""
        return parse_assistant(text, id_prefix)

    def stops(self) -> tuple[str, ...]:
        return (self.eos,)

    def until_stop(self, text: str) -> str:
        """Generated text up to the first of the family's end-of-turn markers."""
        for stop in self.stops():
            text = text.split(stop, 1)[0]
        return text

    def check(self, conv: Conversation, opts: Options) -> None:
        """Refuse what the family cannot express, naming the family (never render it wrong)."""
        if not self.tools and (conv.calls() or any(m.role == "tool" for m in conv.messages)):
            raise RenderError(f"the {self.name} format ({self.generations}) has no tool calls; "
                              "train a tool-use model on a V3 or later family")
        if not self.reasoning and any(m.reasoning for m in conv.messages):
            raise RenderError(f"the {self.name} format ({self.generations}) has no reasoning channel; "
                              "drop reasoning_content or choose deepseek_r1, deepseek_v31, deepseek_v32 or deepseek_v4")


def arguments_json(call: ToolCall) -> str:
    """Arguments as OpenAI clients send them (json.dumps defaults): what official templates print."""
    return json.dumps(call.arguments, ensure_ascii=False)


def function_json(tool: Tool, compact: bool = False) -> str:
    body = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":") if compact else None)


def last_user_index(messages: list[Message]) -> int:
    return max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)


def shows_reasoning(i: int, messages: list[Message], opts: Options) -> bool:
    """Whether assistant turn `i` renders its reasoning: after the last user turn (official rule),
    or every turn with reasoning_turns "all"."""
    return opts.reasoning_turns == "all" or i > last_user_index(messages)


def _join(pieces: list[Piece]) -> tuple[str, list[tuple[int, int]]]:
    text, spans, at = [], [], 0
    for p in pieces:
        if p.trained and p.text:
            spans.append((at, at + len(p.text)))
        text.append(p.text)
        at += len(p.text)
    return "".join(text), spans


def _tokenize(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    out = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(out["input_ids"]), [tuple(o) for o in out["offset_mapping"]]


def bos_of(tokenizer) -> str:
    """The tokenizer's BOS text (official templates print `bos_token`): the same string in every
    DeepSeek vocabulary, R1-Distill's Qwen and Llama ones included."""
    return tokenizer.bos_token or BOS


def encode(conv: Conversation, tokenizer, family: Family, opts: Options = Options(),
           max_length: int | None = None) -> Rendered:
    """Ids and loss mask of a whole training example; truncated from the right to `max_length`."""
    if conv.metadata.get("layout") == "text":  # continued pretraining: BOS + text + EOS, all trained
        text = "".join(m.content or "" for m in conv.messages)
        body = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
        mask = [0, *([1] * (len(ids) - 1))]
    else:
        family.check(conv, opts)
        text, spans = _join(family.pieces(conv, opts, bos_of(tokenizer), prompt=False))
        ids, offsets = _tokenize(tokenizer, text)
        starts = [s for s, _ in spans]
        mask = []
        for start, end in offsets:  # trained if it overlaps a trained piece: the last one starting before its end
            k = bisect.bisect_left(starts, end) - 1
            mask.append(int(k >= 0 and start < spans[k][1]))
    if max_length is not None and len(ids) > max_length:
        ids, mask = ids[:max_length], mask[:max_length]
    if not any(mask):
        why = f"after truncation to {max_length} tokens" if max_length else "(no assistant turn with weight 1)"
        raise RenderError(f"no supervised tokens {why}")
    return Rendered(ids, mask)


def prompt_text(conv: Conversation, tokenizer, family: Family, opts: Options = Options()) -> str:
    family.check(conv, opts)
    return "".join(p.text for p in family.pieces(conv, opts, bos_of(tokenizer), prompt=True))


def encode_prompt(conv: Conversation, tokenizer, family: Family, opts: Options = Options()) -> list[int]:
    """Ids of the conversation so far plus the generation prompt: what the model continues."""
    return _tokenize(tokenizer, prompt_text(conv, tokenizer, family, opts))[0]


def options_from(config: dict[str, Any] | None) -> Options:
    config = config or {}
    return Options(thinking=bool(config.get("thinking", False)),
                   reasoning_turns=config.get("reasoning_turns", "last"),
                   reasoning_effort=config.get("reasoning_effort"))


def unknown_family(name: str, known: list[str]) -> UserError:
    return UserError(f"unknown chat family {name!r}", f"choose one of: {', '.join(known)}")
