"""The contract between the gateway and a backend: prompts in (token ids), text out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop_at_tool_call: bool = False  # tool_choice "none": end the turn where a tool call would begin
    must_start_with: str | None = None  # constrained decoding: the continuation's first characters
    grammar: str | None = None  # the tool-call grammar the continuation must follow (chat/constrain.py)
    grammar_after: int | None = None  # a thinking turn: the token id after which the grammar starts

    def key(self) -> tuple:
        return (self.max_tokens, self.temperature, self.top_p, self.seed, self.stop_at_tool_call, self.must_start_with,
                self.grammar, self.grammar_after)


def tool_call_stop(tokenizer) -> tuple[list[int], list[str]]:
    """Where `stop_at_tool_call` ends a turn, in the served model's format: the id of its call
    opener when that is one token (V3's `<｜tool▁calls▁begin｜>`, V3.1's), else the opener as a
    stop string (V3.2's and V4's DSML `<｜DSML｜function_calls>` spans several tokens)."""
    from dsft.chat.detect import of

    opener = of(tokenizer)[0].calls_open
    ids = tokenizer.encode(opener, add_special_tokens=False)
    return (ids, []) if len(ids) == 1 else ([], [opener])


@dataclass
class Generation:
    text: str  # the continuation, special tokens kept (the parser needs them)
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass
class Request:
    model: str  # a name the backend serves
    prompt: list[int]
    sampling: Sampling = field(default_factory=Sampling)


class Backend(Protocol):
    """What `dsft serve` needs from an inference engine."""

    def served(self) -> list[str]:
        """Names of the models this backend can answer for."""

    async def generate(self, request: Request) -> Generation:
        ...

    def stream(self, request: Request) -> AsyncIterator[str]:
        """Text deltas of the continuation (special tokens kept); the last item is the Generation."""

    async def ready(self, model: str) -> bool:
        """A one-token generation succeeds."""

    def tokenizer(self, model: str):
        """The tokenizer (with dsft's chat template) prompts for `model` are made with."""

    async def load(self, name: str, folder: str) -> None:
        """Start serving `folder` under `name` (a registered version), in memory beside the others."""

    async def unload(self, name: str) -> None:
        ...

    async def close(self) -> None:
        ...
