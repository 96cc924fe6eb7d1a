"""The canonical conversation: the one shape every layer of dsft reads and writes.

Every input layout (OpenAI chat, Alpaca, ShareGPT, prompt/completion, plain text) becomes a
`Conversation`; the renderer, the evaluator and the server only ever see this type. Tool-call
arguments are a dict here (parsed once, validated against the tool's schema); they become a
JSON string again only at the OpenAI API boundary.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


class ToolCall(BaseModel):
    """One function call made by the assistant."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One turn.

    `weight` follows OpenAI's fine-tuning format: on assistant turns only, 0 means "shown as
    context, not trained on"; absent means 1. `reasoning` holds a reasoning model's thinking
    (DeepSeek's `reasoning_content`), kept apart from the visible answer.
    """

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    weight: Literal[0, 1] | None = None
    reasoning: str | None = None

    @property
    def trained(self) -> bool:
        return self.role == "assistant" and self.weight != 0


class Tool(BaseModel):
    """A function the model may call; `parameters` is a JSON Schema for its arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Conversation(BaseModel):
    """A training example: messages, the tools it may call, and free-form metadata.

    `metadata.layout` records which input layout it came from ("chat", "instruction",
    "completion", "text", "sharegpt"); the renderer uses it to train plain `text` as raw
    continuation rather than as a chat turn.
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    tools: list[Tool] | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools or ()]

    def calls(self) -> list[ToolCall]:
        return [c for m in self.messages for c in m.tool_calls or ()]

    def to_openai(self, compact: bool = False) -> dict[str, Any]:
        """The OpenAI chat form (arguments as JSON strings): for export, requests to OpenAI-style
        servers, and chat templates. `compact` writes arguments without spaces, as dsft renders
        them for training (fewer tokens)."""
        import json

        separators = (",", ":") if compact else None
        messages = []
        for m in self.messages:
            out: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.tool_calls:
                out["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name,
                                  "arguments": json.dumps(c.arguments, ensure_ascii=False, separators=separators)}}
                    for c in m.tool_calls
                ]
            for key in ("tool_call_id", "name", "weight"):
                if getattr(m, key) is not None:
                    out[key] = getattr(m, key)
            if m.reasoning is not None:
                out["reasoning_content"] = m.reasoning  # DeepSeek's and OpenAI-compatible servers' name
            messages.append(out)
        row: dict[str, Any] = {"messages": messages}
        if self.tools:
            row["tools"] = [{"type": "function", "function": t.model_dump()} for t in self.tools]
        if self.parallel_tool_calls is not None:
            row["parallel_tool_calls"] = self.parallel_tool_calls
        return row


def as_dict(conv: Conversation | dict[str, Any]) -> dict[str, Any]:
    """The canonical dict of a conversation (`model_dump(exclude_none=True)`'s shape).

    The data scan checks, scores and hashes rows in this form, without building pydantic objects
    for the rows that pass (see `dsft.data.pipeline`); callers holding a `Conversation` pass it
    through here."""
    return conv if type(conv) is dict else conv.model_dump(exclude_none=True)
