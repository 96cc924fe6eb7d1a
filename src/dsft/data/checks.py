"""Per-example checks on a canonical conversation: structure, tool-call bookkeeping, arguments.

Argument schemas are compiled once per distinct schema (fastjsonschema: ~1.5 µs a check
against jsonschema's ~34 µs, measured here) after jsonschema has checked that the schema
itself is valid, so a dataset of 100k tool calls validates in well under a second.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import fastjsonschema
import jsonschema
import orjson

from dsft.data.conversation import Conversation, Tool

Err = Callable[[str, str], None]

_ACK = re.compile(r"error|unable|n[o']t\b|cannot|fail|sorry|unfortunately|\bnone\b|\bno (?:element|result|data|match)|"
                  r"problem|issue|unavailable|denied|invalid|timed out|try again|retry", re.I)
_ERRORISH = re.compile(r'"success"\s*:\s*false|"error"\s*:\s*(?!null|false|""|\{\})|"status"\s*:\s*"(?:error|failed?)"|'
                       r"^\s*(?:error|exception|traceback)\b", re.I)


@dataclass(frozen=True, slots=True)
class Limits:
    """Length bounds for the too_short/too_long warnings, in (estimated) tokens."""

    min_tokens: int = 8
    max_tokens: int = 4096


class SchemaCache:
    """Compiled argument validators keyed by the canonical JSON of their schema."""

    def __init__(self, max_entries: int = 10_000):
        self._cache: dict[bytes, tuple[Callable | None, str]] = {}
        self._max = max_entries

    def get(self, schema: dict) -> tuple[Callable | None, str]:
        """(validator, "") for a valid schema, (None, reason) for an invalid one."""
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._compile(schema)
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    @staticmethod
    def _compile(schema: dict) -> tuple[Callable | None, str]:
        try:
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
            return fastjsonschema.compile(schema), ""
        except jsonschema.SchemaError as e:
            return None, e.message
        except fastjsonschema.JsonSchemaDefinitionException as e:
            return None, str(e)


def check(conv: Conversation, err: Err, validators: dict[str, Callable | None], tokens: int,
          limits: Limits = Limits(), args_parsed: bool = True) -> None:
    """Report every problem of one example through `err(code, message)`.

    `validators` come from `compile_tools(conv.tools)`, computed once per distinct tool list.
    `args_parsed=False` (some arguments were not JSON) skips the schema check, which would only
    repeat that error in other words.
    """
    msgs = conv.messages
    if not msgs:
        err("empty_messages", "messages is empty")
        return
    layout = conv.metadata.get("layout", "chat")
    _check_messages(conv, err, validators if args_parsed else {n: None for n in validators})
    if not any(m.trained and (m.content or m.tool_calls) for m in msgs):
        err("no_assistant_turn", "no assistant message with weight 1 and content")
    if layout in ("chat", "sharegpt") and not any(m.role == "system" for m in msgs):
        err("no_system_message", "the conversation has no system message")
    if msgs[-1].role in ("user", "tool") and layout != "text":
        err("ends_without_answer", f"the last message is a {msgs[-1].role} turn")
    if tokens < limits.min_tokens:
        err("too_short", f"about {tokens} tokens (minimum {limits.min_tokens})")
    elif tokens > limits.max_tokens:
        err("too_long", f"about {tokens} tokens (maximum {limits.max_tokens})")
    _check_replies(conv, err)


def compile_tools(tools: list[Tool] | None, err: Err, schemas: SchemaCache) -> dict[str, Callable | None]:
    """Argument validators by tool name (None for a tool whose schema is invalid)."""
    validators: dict[str, Callable | None] = {}
    for k, tool in enumerate(tools or ()):
        if tool.name in validators:
            err("duplicate_tool_name", f"tools[{k}] repeats the name {tool.name!r}")
            continue
        validator, reason = schemas.get(tool.parameters)
        if validator is None:
            err("invalid_tool_schema", f"tools[{k}] ({tool.name}) parameters: {reason}")
        validators[tool.name] = validator
    return validators


def _check_messages(conv: Conversation, err: Err, validators: dict[str, Callable | None]) -> None:
    declared = conv.tools is not None
    seen_ids: set[str] = set()
    pending: dict[str, str] = {}  # call id -> tool name, calls awaiting a result
    answered: set[str] = set()
    undeclared_warned = False
    for i, m in enumerate(conv.messages):
        if m.weight is not None and m.role != "assistant":
            err("invalid_field", f"messages[{i}].weight is only allowed on assistant messages")
        if m.role == "tool":
            _check_result(i, m, pending, answered, err)
            continue
        if m.role in ("user", "assistant") and pending:
            ids = ", ".join(pending)
            err("unanswered_tool_call", f"call {ids} has no tool result before messages[{i}] ({m.role})")
            pending.clear()
        if m.role == "assistant" and m.tool_calls:
            if conv.parallel_tool_calls is False and len(m.tool_calls) > 1:
                err("parallel_calls_disabled", f"messages[{i}] makes {len(m.tool_calls)} calls")
            for j, call in enumerate(m.tool_calls):
                where = f"messages[{i}].tool_calls[{j}]"
                if call.id in seen_ids:
                    err("duplicate_tool_call_id", f"{where}.id {call.id!r} is used twice")
                seen_ids.add(call.id)
                pending[call.id] = call.name
                if not declared:
                    if not undeclared_warned:
                        err("tools_not_declared", f"{where} calls {call.name!r} but the example declares no tools")
                        undeclared_warned = True
                elif call.name not in validators:
                    known = ", ".join(validators) or "none"
                    err("undeclared_tool", f"{where} calls {call.name!r}; declared tools: {known}")
                elif (validate := validators[call.name]) is not None:
                    try:
                        validate(call.arguments)
                    except fastjsonschema.JsonSchemaValueException as e:
                        err("arguments_schema_mismatch", f"{where} ({call.name}): {e.message}")
        elif m.role != "assistant" and not (m.content and m.content.strip()):
            err("missing_content", f"messages[{i}] ({m.role}) has no content")
        elif m.role == "assistant" and not (m.content and m.content.strip()) and not m.reasoning:
            err("missing_content", f"messages[{i}] (assistant) has no content and no tool calls")


def _check_result(i: int, m, pending: dict[str, str], answered: set[str], err: Err) -> None:
    if m.content is None:
        err("missing_content", f"messages[{i}] (tool) has no content")
    call_id = m.tool_call_id
    if call_id is None:
        if len(pending) == 1 and (m.name is None or m.name in pending.values()):
            call_id = next(iter(pending))  # unambiguous: the only open call
        else:
            err("missing_tool_call_id", f"messages[{i}] (tool) has no tool_call_id and "
                                        f"{len(pending)} calls are open")
            return
    if call_id not in pending:
        why = "was already answered" if call_id in answered else "matches no call made before it"
        err("orphan_tool_result", f"messages[{i}].tool_call_id {call_id!r} {why}")
        return
    name = pending.pop(call_id)
    answered.add(call_id)
    if m.name is not None and m.name != name:
        err("tool_name_mismatch", f"messages[{i}] says {m.name!r}, its call was to {name!r}")


def _check_replies(conv: Conversation, err: Err) -> None:
    """Heuristics on assistant text: cut-off replies, repetition, errors glossed over."""
    msgs = conv.messages
    last = next((m for m in reversed(msgs) if m.role == "assistant"), None)
    if last is not None and last.content:
        text = last.content.rstrip()
        if text.count("```") % 2 or text[-1:] in (",", "(", "[", "{"):
            err("truncated_reply", f"the last assistant reply ends with {text[-20:]!r}")
    for i, m in enumerate(msgs):
        if m.role == "assistant" and m.content and len(m.content) > 200:
            lines = [ln.strip() for ln in m.content.splitlines() if len(ln.strip()) >= 10 and not ln.startswith("```")]
            if len(lines) - len(set(lines)) >= 2:
                err("repetitive_reply", f"messages[{i}] repeats lines")
        if m.role == "tool" and m.content and _ERRORISH.search(m.content):
            reply = next((n for n in msgs[i + 1:] if n.role == "assistant" and n.content), None)
            if reply is not None and not _ACK.search(reply.content):
                err("tool_error_claimed_success", f"messages[{i}] is an error result; the reply does not say so")
