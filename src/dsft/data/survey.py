"""One pass over a canonical conversation: its types checked and the facts every rule needs.

The scan judges every row of every dataset, and half a dozen rules (the token estimate, the
guide's quality rubric, "is anything trained on?", the split's task type, the report's tool
counts, the identical-replies warning) each want a little of the same walk over the messages.
`survey` walks once; the rules read the `Survey`. It also decides whether the row can skip
pydantic: it returns None unless every field already has exactly the type `Conversation`
demands (a conservative subset of what the model accepts, kept honest by a test against it),
and the caller hands anything else to pydantic, which coerces it or explains what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dsft.data.conversation import ROLES

_MESSAGE_KEYS = frozenset(("role", "content", "tool_calls", "tool_call_id", "name", "weight", "reasoning"))
_OPTIONAL_STR = ("content", "tool_call_id", "name", "reasoning")


@dataclass(slots=True)
class Survey:
    messages: int = 0
    utf8: int = 0  # bytes of content and reasoning, plus the calls' names and JSON arguments
    utf16: int = 0  # UTF-16 units of content: JavaScript's string length, which the guide's rubric uses
    has_system: bool = False
    has_tool: bool = False
    has_calls: bool = False  # some message carries tool_calls (even an empty list, as the guide's JS tests it)
    trained: bool = False  # some assistant turn with weight 1 and content or calls
    call_names: list[str] = field(default_factory=list)
    last_role: str = ""
    final_reply: str | None = None  # the last assistant content that is not empty
    last_assistant: str | None = None  # the content of the last assistant message, empty or not
    text: list[str] = field(default_factory=list)  # roles, contents, call names and sorted-key arguments: dedup's input

    def approx_tokens(self, tools_nbytes: int) -> int:
        """UTF-8 bytes / 4, plus 4 tokens a message for role markers, plus the tool schemas."""
        return (self.utf8 + 16 * self.messages + tools_nbytes + 3) // 4


def survey(conv: dict[str, Any]) -> Survey | None:
    """Facts about `conv`, or None if some field's type is not exactly the model's.

    None-valued keys are dropped from messages on the way (the canonical form omits them)."""
    msgs = conv["messages"]
    if type(msgs) is not list:
        return None
    ptc = conv.get("parallel_tool_calls")
    if (ptc is not None and type(ptc) is not bool) or type(conv.get("metadata", {})) is not dict:
        return None
    s = Survey(len(msgs))
    text = s.text
    utf8 = utf16 = 0
    for i, m in enumerate(msgs):
        if type(m) is not dict:
            return None
        role = m.get("role")
        content = m.get("content")
        text.append(role)
        if len(m) != 2 or type(content) is not str or role not in ROLES:  # {role, content} is most messages
            if role not in ROLES or not m.keys() <= _MESSAGE_KEYS:
                return None
            if None in m.values():
                m = msgs[i] = {k: v for k, v in m.items() if v is not None}
                content = m.get("content")
            for key in _OPTIONAL_STR:
                if key in m and type(m[key]) is not str:
                    return None
            weight = m.get("weight", 1)
            if type(weight) is not int or weight not in (0, 1):
                return None
            if "reasoning" in m:
                utf8 += _utf8(m["reasoning"])
            if "tool_calls" in m:
                calls = m["tool_calls"]
                if type(calls) is not list:
                    return None
                s.has_calls = True
                for c in calls:  # made by layouts._call: id and name are strings, arguments a dict
                    args = orjson.dumps(c.get("arguments", {}), option=orjson.OPT_SORT_KEYS)
                    s.call_names.append(c["name"])
                    text += (c["name"], args.decode())
                    utf8 += len(c["name"]) + len(args) + 8
                if role == "assistant" and weight and calls:
                    s.trained = True
            if role == "assistant" and weight == 0:
                role = "context"  # shown, not trained on: only the trained flag cares
        if content:
            text.append(content)
            if content.isascii():
                utf8 += len(content)
                utf16 += len(content)
            else:
                utf8 += len(content.encode("utf-8"))
                utf16 += len(content.encode("utf-16-le", "surrogatepass")) // 2
        if role == "assistant" or role == "context":
            s.last_assistant = content
            if content:
                s.final_reply = content
                if role == "assistant":
                    s.trained = True
        elif role == "system":
            s.has_system = True
        elif role == "tool":
            s.has_tool = True
    s.utf8, s.utf16 = utf8, utf16
    s.last_role = msgs[-1]["role"] if msgs else ""
    return s


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))
