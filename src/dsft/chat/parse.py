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


@dataclass
class ParsedTurn:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    ok: bool = True
    error: str = ""
    reasoning: str | None = None


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
    calls: list[ToolCall] = []
    for k, match in enumerate(_CALL.finditer(block)):
        head, body = match.group("head"), match.group("body")
        if head == "function":  # V3: function<sep>NAME\n```json\nARGS\n```
            fenced = _V3_BODY.match(body)
            if not fenced:
                return ParsedTurn(content or None, calls, False, f"call {k}: no ```json block after the name")
            name, raw = fenced.group("name").strip(), fenced.group("args")
        else:  # V3.1: NAME<sep>ARGS
            name, raw = head.strip(), body
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as e:
            return ParsedTurn(content or None, calls, False, f"call {k} ({name}): arguments are not JSON: {e.msg}")
        if not isinstance(arguments, dict):
            return ParsedTurn(content or None, calls, False, f"call {k} ({name}): arguments are not an object")
        calls.append(ToolCall(id=f"{id_prefix}{k}", name=name, arguments=arguments))
    if not calls:
        return ParsedTurn(content or None, [], False, "tool-call block holds no complete call")
    if not closed:
        return ParsedTurn(content or None, calls, False, "tool-call block is not closed")
    return ParsedTurn(content or None, calls)
