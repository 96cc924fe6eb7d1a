"""Tool calls that cannot come out malformed: decoding held to the format's call layout and the tools' schemas.

Why: a small or briefly trained model knows which tool to call long before it writes every
brace right. Measured on the tiny model after a 10-minute run (calendar benchmark, unseen values):
30 % of its turns did not parse, most with the right tool name, after a broken array or a
key the schema does not have (`"attendees":["a@x.io","b":"travel"`). Serving stacks constrain
decoding for the same reason (vLLM's structured outputs, OpenAI's strict function calling);
dsft does it in the chat family's own layout, so the constrained text is exactly what the model
was trained to write, and evaluation uses the same constraint as `dsft serve` (one behaviour).

The grammar (llguidance's Lark dialect, compiled against the tokenizer) allows what the tool
choice allows: free text, optionally followed by one tool-call block (`auto`); only calls
(`required`); only calls of one tool (a named choice); never a call (`none` needs no grammar:
the gateway stops the turn where a call would begin). Each call names a declared tool and its
arguments satisfy that tool's JSON Schema: properties in the schema's order, enums, formats
(email, date), patterns, types. What it cannot do: choose the right value, or the right tool
among declared ones; those stay the model's. A reasoning family thinks freely: the constraint
starts after its end-of-thinking token.

Families whose calls are not JSON after a name (V3.2 and V4 write DSML parameters) have no
grammar here yet: `grammar_for` returns None and decoding is left free, which callers report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from dsft.chat.encoder import Family
    from dsft.data.conversation import Tool

_NAMES = ("\ue000", "\ue001")  # private-use sentinels no tool name or format text holds


@dataclass(frozen=True)
class CallLayout:
    """A family's call block as literal text around each call's name and arguments:
    `open NAME mid ARGS (between NAME mid ARGS)* close`."""

    open: str
    mid: str
    between: str
    close: str
    key_separator: str = ":"  # the arguments' JSON as the renderer writes it: compact (V3) or spaced (V3.1)
    item_separator: str = ","


def call_layout(family: Family) -> CallLayout | None:
    """Read the layout off the family's own renderer (one source of truth): render one and two
    calls with sentinel names and empty arguments and cut the text around them. None when the
    family renders no calls or its arguments are not a JSON object after the name."""
    from dsft.data.conversation import Message, ToolCall

    render = getattr(family, "calls", None)
    if render is None or not family.tools:
        return None
    a, b = (ToolCall(id=str(k), name=n, arguments={}) for k, n in enumerate(_NAMES))
    one = render(Message(role="assistant", tool_calls=[a]))
    two = render(Message(role="assistant", tool_calls=[a, b]))
    if one.count(_NAMES[0]) != 1 or "{}" not in one.split(_NAMES[0], 1)[1]:
        return None
    open_, rest = one.split(_NAMES[0], 1)
    mid, close = rest.split("{}", 1)
    head = open_ + _NAMES[0] + mid + "{}"
    if not two.startswith(head) or _NAMES[1] not in two:
        return None
    between = two[len(head):two.index(_NAMES[1])]
    if two != head + between + _NAMES[1] + mid + "{}" + close:
        return None
    sample = render(Message(role="assistant", tool_calls=[ToolCall(id="0", name=_NAMES[0], arguments={"a": 0, "b": 0})]))
    body = sample[len(open_ + _NAMES[0] + mid):len(sample) - len(close)]
    key_sep, item_sep = body[len('{"a"'):body.index("0")], body[body.index("0") + 1:body.index('"b"')]
    return CallLayout(open_, mid, between, close, key_sep, item_sep)


def _literal(text: str, added: dict[str, int]) -> str:
    """Lark for exact text: added tokens (the format's markers) as token ids, the rest as strings,
    so a marker can only be written as its own token, never spelled out in pieces."""
    parts, at = [], 0
    markers = sorted(added, key=len, reverse=True)
    while at < len(text):
        hit = next((m for m in markers if text.startswith(m, at)), None)
        if hit is not None:
            parts.append(f"<[{added[hit]}]>")
            at += len(hit)
            continue
        end = min((i for m in markers if (i := text.find(m, at)) >= 0), default=len(text))
        parts.append(json.dumps(text[at:end], ensure_ascii=False))
        at = end
    return " ".join(parts) or '""'


def _schema(tool: Tool, layout: CallLayout) -> str:
    schema = dict(tool.parameters or {})
    schema.setdefault("type", "object")
    # The JSON is written exactly as the renderer writes it (a model left free to add whitespace can
    # write it forever: measured, an untrained model filled its budget with tabs). Keywords llguidance
    # does not implement are ignored rather than refused: a tool's schema is the user's, and a
    # constraint that refuses it would block serving.
    schema["x-guidance"] = {"lenient": True, "whitespace_flexible": False,
                            "key_separator": layout.key_separator, "item_separator": layout.item_separator}
    return json.dumps(schema, ensure_ascii=False)


def grammar_for(family: Family, tokenizer, tools: list[Tool], choice: str = "auto",
                parallel: bool = True, opened: bool = False) -> str | None:
    """The Lark grammar of an assistant turn that may call `tools` under `choice` ("auto",
    "required" or a tool's name); None when there is nothing to constrain (no tools, choice
    "none") or the family's calls are not JSON (see the module docstring). `opened`: the prompt
    already ends with the family's forced call opener (the gateway's `tool_choice`), so the
    grammar starts at the first call's name."""
    layout = call_layout(family)
    if layout is None or not tools or choice == "none":
        return None
    named = [t for t in tools if t.name == choice] if choice not in ("auto", "required") else list(tools)
    if not named:
        raise ValueError(f"tool_choice names {choice!r}, which the request does not declare")
    added = dict(tokenizer.get_added_vocab())
    lit = lambda text: _literal(text, added)  # noqa: E731
    rules = [f"call_{k}: {lit(t.name + layout.mid)} args_{k}\nargs_{k}: %json {_schema(t, layout)}"
             for k, t in enumerate(named)]
    call = "call: " + " | ".join(f"call_{k}" for k in range(len(named)))
    more = f" ({lit(layout.between)} call)*" if parallel and family.parallel_calls else ""
    calls = f"calls: {'' if opened else lit(layout.open)} call{more} {lit(layout.close)}"
    if opened:
        start = "start: calls"
    else:
        text = "TEXT?" if family.text_before_calls else ""
        start = f"start: TEXT | {text} calls" if choice == "auto" else "start: WS? calls"
    return "\n".join([start, calls, call, *rules, "TEXT: /(?s:.+)/", "WS: /[ \\t\\n]+/"])


_LLTOKENIZERS: dict[tuple[int, int], object] = {}


def _lltokenizer(tokenizer, vocab_size: int):
    """llguidance's view of the tokenizer (about a second for a 128k vocabulary: cached)."""
    import llguidance.hf

    key = (id(tokenizer), vocab_size)
    if key not in _LLTOKENIZERS:
        _LLTOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
    return _LLTOKENIZERS[key]


def thought_end(tokenizer, prompt: list[int]) -> int | None:
    """The end-of-thinking token id when `prompt` ends inside an open thought (a reasoning family's
    thinking turn: the reply is REASONING</think>ANSWER and only the answer is constrained); None
    when the reply starts right away, or when `</think>` is not one token (then it cannot be told
    apart while decoding, and the caller leaves that turn free)."""
    from dsft.chat.encoder import END_THINK, THINK

    tail = tokenizer.decode(prompt[-4:], skip_special_tokens=False).rstrip("\n")
    if not tail.endswith(THINK):
        return None
    end = tokenizer.convert_tokens_to_ids(END_THINK)
    return None if end is None or end == tokenizer.unk_token_id else end


class GrammarConstraint:
    """A `transformers` logits processor holding each row of a batch to its own grammar (None = free).

    transformers calls it once per generated position with the ids so far: it feeds each row's last
    token to that row's matcher and masks every token the grammar does not allow next. A row whose
    `wait_for` is a token id (`thought_end`) starts its matcher only after that token. A finished
    row (end token consumed) is left alone while the others go on."""

    def __init__(self, tokenizer, grammars: list[str | None], vocab_size: int,
                 wait_for: list[int | None] | None = None):
        from llguidance import LLMatcher

        lltok = _lltokenizer(tokenizer, vocab_size)
        self.matchers = [None if g is None else LLMatcher(lltok, g) for g in grammars]
        for m in self.matchers:
            if m is not None and m.is_error():
                raise ValueError(f"tool-call grammar does not compile: {m.get_error()}")
        self.wait_for = wait_for or [None] * len(grammars)
        self.waiting = [w is not None and m is not None for w, m in zip(self.wait_for, self.matchers)]
        self.vocab_size = vocab_size
        self.first = True
        self.words = (vocab_size + 31) // 32

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        last = None if self.first else input_ids[:, -1].tolist()
        self.first = False
        bitmask = np.full((len(self.matchers), self.words), -1, dtype=np.int32)
        active = []
        for row, m in enumerate(self.matchers):
            if m is None or m.is_stopped() or m.is_error():
                continue
            if last is not None:
                if self.waiting[row]:
                    self.waiting[row] = last[row] != self.wait_for[row]
                    if self.waiting[row]:
                        continue
                elif not m.validate_tokens([last[row]]):
                    # A token the mask did not allow: the row was ended by another stopping rule
                    # (a loop stop, another end id) and generate pads it. It is left alone, without
                    # feeding the matcher a token it would reject (llguidance prints a parser error).
                    self.matchers[row] = None
                    continue
                else:
                    m.consume_token(last[row])
            elif self.waiting[row]:
                continue
            if m.is_stopped():
                continue
            m.unsafe_compute_mask_ptr(bitmask[row].ctypes.data, self.words * 4)
            active.append(row)
        if active:
            bits = np.unpackbits(bitmask[active].view(np.uint8), axis=1, bitorder="little")[:, :scores.shape[1]]
            allowed = torch.from_numpy(bits.astype(bool))
            if allowed.shape[1] < scores.shape[1]:  # logits past the tokenizer's vocabulary are never allowed
                allowed = torch.nn.functional.pad(allowed, (0, scores.shape[1] - allowed.shape[1]))
            rows = torch.tensor(active)
            scores[rows] = scores[rows].masked_fill(~allowed, float("-inf"))
        return scores
