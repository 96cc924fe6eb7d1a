"""OpenAI chat completions <-> dsft: request to Conversation to prompt ids, generated text to
an assistant message with `tool_calls` (arguments as JSON strings at this boundary only).

tool_choice: "auto" lets the model decide; "none" ends the turn where a tool call would begin;
"required" and a named function start the assistant turn with the tool-call markers (and the
name), so the model can only continue with a call. Whatever the choice, a call is decoded under
the tools' grammar (chat/constrain.py: a declared name, arguments valid against its schema)
unless the request sends `"constrain_tool_calls": false`. The renderer and the parser are the ones
training and evaluation use, so what is served is what was trained and measured.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dsft.chat.encoder import END_THINK, THINK, Family
from dsft.chat.families import FAMILIES
from dsft.chat.parse import split_reasoning
from dsft.serve.backend import Generation, Sampling

V3 = FAMILIES["deepseek_v3"]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI adds fields often; unknown ones are ignored

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(None, max_length=256)
    n: int | None = Field(None, ge=1, le=1)


class BadRequest(ValueError):
    pass


def sampling(req: ChatRequest, family: Family = V3, grammar: tuple[str | None, int | None] = (None, None)) -> Sampling:
    """`grammar`: the turn's tool-call grammar and the token it starts after (`tool_grammar`). A
    named tool_choice also keeps its name constraint, for a backend that applies no grammar."""
    return Sampling(max_tokens=req.max_completion_tokens or req.max_tokens or 256,
                    temperature=req.temperature if req.temperature is not None else 0.0,
                    top_p=req.top_p if req.top_p is not None else 1.0, seed=req.seed,
                    stop_at_tool_call=_no_calls(req),
                    must_start_with=name_constraint(req, family),
                    grammar=grammar[0], grammar_after=grammar[1])


def tool_grammar(req: ChatRequest, tokenizer, family: Family, prompt: list[int], prefix: str
                 ) -> tuple[str | None, int | None]:
    """The grammar this request's calls are decoded under, and the token id after which it starts
    (a thinking turn's end of thinking); (None, None) when nothing is constrained: no tools,
    tool_choice "none", `constrain_tool_calls: false`, or a family without a call grammar."""
    from dsft.chat.constrain import grammar_for, thought_end
    from dsft.data.conversation import Tool

    if _no_calls(req) or (req.model_extra or {}).get("constrain_tool_calls") is False:
        return None, None
    tools = [Tool(name=f["name"], description=f.get("description") or "",
                  parameters=f.get("parameters") or {"type": "object", "properties": {}})
             for f in ((t.get("function") or t) for t in req.tools or [])]
    choice = req.tool_choice["function"]["name"] if isinstance(req.tool_choice, dict) else req.tool_choice or "auto"
    parallel = req.parallel_tool_calls is not False
    try:
        grammar = grammar_for(family, tokenizer, tools, choice, parallel, opened=bool(prefix))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return grammar, (thought_end(tokenizer, prompt) if grammar and not prefix else None)


def _no_calls(req: ChatRequest) -> bool:
    """tool_choice "none", or no tools declared: a tool call here would be a hallucination."""
    return req.tool_choice == "none" or not req.tools


def forced_prefix(req: ChatRequest, family: Family = V3) -> str:
    """Text the assistant turn is made to start with, for tool_choice required / a named function:
    the tool-call markers up to the function name (the name itself is a decoding constraint, see
    `name_constraint`: byte-level BPE merges the name with what follows it, so appending its
    tokens would show the model a split it never saw in training)."""
    choice = req.tool_choice
    if choice == "required" and not req.tools:
        raise BadRequest("tool_choice 'required' needs tools")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name or name not in {(t.get("function") or t).get("name") for t in req.tools or []}:
            raise BadRequest(f"tool_choice names {name!r}, which is not among the request's tools")
    if (choice == "required" or isinstance(choice, dict)) and not family.tools:
        raise BadRequest(f"this model speaks the {family.name} format, which has no tool calls")
    if choice == "required" or isinstance(choice, dict):
        return family.forced_call
    return ""


def name_constraint(req: ChatRequest, family: Family = V3) -> str | None:
    if isinstance(req.tool_choice, dict):
        return req.tool_choice["function"]["name"] + family.after_name
    return None


def prompt_ids(req: ChatRequest, tokenizer, family: Family = V3) -> tuple[list[int], str]:
    """The prompt's token ids, ending with the forced assistant prefix (returned as text too);
    `family` is the one `tokenizer` speaks (the caller has told it already)."""
    from dsft.chat.encoder import RenderError
    from dsft.chat.render import render_prompt
    from dsft.data.pipeline import to_conversation

    record: dict[str, Any] = {"messages": req.messages}
    if req.tools:
        record["tools"] = req.tools
    if req.parallel_tool_calls is not None:
        record["parallel_tool_calls"] = req.parallel_tool_calls
    try:
        conv = to_conversation(record, prompt=True)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    try:
        ids = render_prompt(conv, tokenizer)
    except RenderError as e:
        raise BadRequest(str(e)) from None
    prefix = forced_prefix(req, family)
    if prefix:
        ids = ids + tokenizer.encode(prefix, add_special_tokens=False)
    return ids, prefix


def apply_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    for s in [stop] if isinstance(stop, str) else stop or []:
        if s and s in text:
            return text[: text.index(s)], True
    return text, False


def message(text: str, req: ChatRequest, family: Family = V3) -> tuple[dict[str, Any], str]:
    """The assistant message for generated `text` (forced prefix included) and its finish reason;
    a reasoning family's thinking comes back as `reasoning_content`, as DeepSeek's API returns it."""
    text = family.until_stop(text)
    turn = family.parse(text, id_prefix=f"call_{uuid.uuid4().hex[:8]}_")
    extra = {"reasoning_content": turn.reasoning} if turn.reasoning else {}
    declared = {(t.get("function") or t).get("name") for t in req.tools or []}
    # A call to a tool the request never declared is not a call (a client would dispatch it): without
    # the grammar (a vllm backend, `constrain_tool_calls: false`) the text comes back as content.
    if turn.ok and turn.tool_calls and not _no_calls(req) and all(c.name in declared for c in turn.tool_calls):
        calls = [{"id": c.id, "type": "function",
                  "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                 for c in turn.tool_calls]
        content = (turn.content or "").strip() or None
        return {"role": "assistant", "content": content, **extra, "tool_calls": calls}, "tool_calls"
    if family.reasoning:  # the reply after any thought, even an empty one (`</think>Hi.`)
        text = turn.content or ""
    content = text.split(family.calls_open, 1)[0] if _no_calls(req) else text
    content, _ = apply_stop(content, req.stop)
    return {"role": "assistant", "content": content, **extra}, "stop"


def completion(req: ChatRequest, model_name: str, gen: Generation, prefix: str,
               family: Family = V3) -> dict[str, Any]:
    msg, reason = message(prefix + gen.text, req, family)
    if reason == "stop" and gen.finish_reason == "length":
        reason = "length"
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model_name, "choices": [{"index": 0, "message": msg, "finish_reason": reason, "logprobs": None}],
            "usage": usage(gen)}


def usage(gen: Generation) -> dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


def chunk(cid: str, model_name: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def shown_until(text: str, window: int) -> int:
    """How much of streamed `text` can be sent now: all of it, unless a `<` within `window`
    characters of its end may be opening a marker that the next tokens complete."""
    tail = text.rfind("<")
    return tail if tail >= 0 and len(text) - tail < window else len(text)


class StreamShaper:
    """Turns text deltas into OpenAI chunks: a thinking turn's reasoning streams as
    `reasoning_content` deltas until `</think>`, then content streams as it comes; from the first
    tool-call marker on, text is held and sent as `tool_calls` deltas (one per call) when the turn
    ends. The deltas of each field add up to the field of the non-streamed reply (a thought still
    open when the turn ends is content there, and was streamed as reasoning here)."""

    def __init__(self, req: ChatRequest, model_name: str, prefix: str, family: Family = V3,
                 thinking: bool = False):
        self.req, self.model, self.prefix, self.family = req, model_name, prefix, family
        self.cid = f"chatcmpl-{uuid.uuid4().hex}"
        self.text, self.sent, self.holding = prefix, 0, bool(prefix)  # a forced call is held whole
        self.in_reasoning = family.reasoning and thinking and not prefix  # the prompt ends inside <think>
        self.reasoning_sent = ""

    def first(self) -> dict[str, Any]:
        return chunk(self.cid, self.model, {"role": "assistant", "content": ""})

    def _reasoning(self) -> list[dict[str, Any]]:
        """Reasoning so far, as `split_reasoning` will read it: leading and trailing newlines
        dropped, a partial `</think>` kept back."""
        body = self.family.until_stop(self.text)
        head, closed, _ = body.removeprefix(THINK).partition(END_THINK)
        shown = head.lstrip("\n")
        shown = shown[:shown_until(shown, len(END_THINK))] if not closed else shown
        shown = shown.rstrip("\n")
        out = []
        if len(shown) > len(self.reasoning_sent) and shown.startswith(self.reasoning_sent):
            out.append(chunk(self.cid, self.model, {"reasoning_content": shown[len(self.reasoning_sent):]}))
            self.reasoning_sent = shown
        self.in_reasoning = not closed and body == self.text  # an end token ends the reasoning too
        return out

    def feed(self, delta: str) -> list[dict[str, Any]]:
        self.text += delta
        if self.holding:
            return []
        out = []
        if self.in_reasoning:
            out += self._reasoning()
            if self.in_reasoning:
                return out
        visible = self.family.until_stop(self.text)
        if self.family.reasoning:
            visible = split_reasoning(visible)[1]
        if self.family.calls_open in visible:
            self.holding = True
            visible = visible.split(self.family.calls_open, 1)[0]
        visible, stopped = apply_stop(visible, self.req.stop)
        # keep back what might be the start of a marker or stop word
        safe = len(visible) if self.holding or stopped else shown_until(visible, 24)
        if safe > self.sent:
            out.append(chunk(self.cid, self.model, {"content": visible[self.sent:safe]}))
            self.sent = safe
        return out

    def finish(self, gen: Generation) -> list[dict[str, Any]]:
        msg, reason = message(self.text, self.req, self.family)
        out = []
        reasoning = msg.get("reasoning_content") or ""
        if reasoning.startswith(self.reasoning_sent) and len(reasoning) > len(self.reasoning_sent):
            out.append(chunk(self.cid, self.model, {"reasoning_content": reasoning[len(self.reasoning_sent):]}))
        if msg.get("tool_calls"):
            if msg.get("content") and self.sent == 0:
                out.append(chunk(self.cid, self.model, {"content": msg["content"]}))
            for k, call in enumerate(msg["tool_calls"]):
                out.append(chunk(self.cid, self.model, {"tool_calls": [{"index": k, **call}]}))
        else:
            rest = (msg["content"] or "")[self.sent:]
            if rest:
                out.append(chunk(self.cid, self.model, {"content": rest}))
            if gen.finish_reason == "length":
                reason = "length"
        out.append(chunk(self.cid, self.model, {}, reason))
        if (self.req.stream_options or {}).get("include_usage"):
            out.append({"id": self.cid, "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": self.model, "choices": [], "usage": usage(gen)})
        return out
