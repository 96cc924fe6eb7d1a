"""Generated text -> assistant turn: content and tool calls. The inverse of the renderer.

Reads DeepSeek-V3's layout (`<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME` + a ```json block)
and also V3.1's (`<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS`), since a model's template decides
which one it speaks. Evaluation counts `ok=False` against the parse rate; serving returns the
text as content in that case rather than inventing a call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dsft.data.conversation import ToolCall

EOS = "<｜end▁of▁sentence｜>"
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
_CALL = re.compile(r"<｜tool▁call▁begin｜>(?P<head>.*?)<｜tool▁sep｜>(?P<body>.*?)<｜tool▁call▁end｜>", re.S)
_V3_BODY = re.compile(r"(?P<name>[^\n]+)\n```(?:json)?\n(?P<args>.*)\n```\s*$", re.S)
_NAMED = re.compile(r"<｜tool▁call▁begin｜>(?P<head>[^<]*?)<｜tool▁sep｜>(?P<rest>[^\n<]*)")
_JSON_NAME = re.compile(r'"name"\s*:\s*"(?P<name>[^"\\]*)"')


@dataclass
class ParsedTurn:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    ok: bool = True
    error: str = ""
    reasoning: str | None = None
    # The tool names the reply's structure gives, calls whose arguments did not parse included
    # (tool-name accuracy counts them; the argument metrics do not); None: those of tool_calls.
    named: list[str] | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.tool_calls] if self.named is None else self.named


def call_names(block: str) -> list[str]:
    """Names in V3/V3.1 call markup, complete calls or not: `function<sep>NAME` (V3), `NAME<sep>` (V3.1)."""
    return [(m.group("rest") if m.group("head") == "function" else m.group("head")).strip()
            for m in _NAMED.finditer(block)]


def json_names(blocks: list[str]) -> list[str]:
    """The first `"name": "..."` of each JSON call body (ChatML, Llama 3), parsed or not."""
    return [m.group("name") for m in map(_JSON_NAME.search, blocks) if m]


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, the rest) of a generated turn of a reasoning family. Its prompt ends inside an
    open `<think>` when thinking, so the text reads `REASONING</think>ANSWER` (it may repeat the
    `<think>` itself); no `</think>` means no reasoning."""
    body = text[len("<think>"):] if text.startswith("<think>") else text
    if "</think>" not in body:
        return None, text
    reasoning, _, rest = body.partition("</think>")
    return reasoning.strip("\n") or None, rest.lstrip("\n")


def parse_assistant(text: str, id_prefix: str = "call_") -> ParsedTurn:
    """Parse one generated assistant turn (special tokens kept in `text`)."""
    text = text.split(EOS, 1)[0]
    if CALLS_BEGIN not in text:
        return ParsedTurn(content=text)
    content, _, rest = text.partition(CALLS_BEGIN)
    block, closed, _ = rest.partition(CALLS_END)
    names = call_names(block)
    calls: list[ToolCall] = []
    for k, match in enumerate(_CALL.finditer(block)):
        head, body = match.group("head"), match.group("body")
        if head == "function":  # V3: function<sep>NAME\n```json\nARGS\n```
            fenced = _V3_BODY.match(body)
            if not fenced:
                return ParsedTurn(content or None, calls, False, f"call {k}: no ```json block after the name", named=names)
            name, raw = fenced.group("name").strip(), fenced.group("args")
        else:  # V3.1: NAME<sep>ARGS
            name, raw = head.strip(), body
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as e:
            return ParsedTurn(content or None, calls, False, f"call {k} ({name}): arguments are not JSON: {e.msg}", named=names)
        if not isinstance(arguments, dict):
            return ParsedTurn(content or None, calls, False, f"call {k} ({name}): arguments are not an object", named=names)
        calls.append(ToolCall(id=f"{id_prefix}{k}", name=name, arguments=arguments))
    if not calls:
        return ParsedTurn(content or None, [], False, "tool-call block holds no complete call", named=names)
    if not closed:
        return ParsedTurn(content or None, calls, False, "tool-call block is not closed", named=names)
    return ParsedTurn(content or None, calls)
