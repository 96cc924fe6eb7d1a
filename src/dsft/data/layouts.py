"""Input layouts and their conversion to the canonical conversation.

Detected per record from its keys (a file may mix layouts), or forced with `--format`:

| layout      | keys                                          | becomes                           |
|-------------|-----------------------------------------------|-----------------------------------|
| chat        | messages (+ tools, functions, parallel_tool_calls) | as is (OpenAI's format)      |
| sharegpt    | conversations of from/value (+ system, tools)  | roles mapped, calls parsed        |
| instruction | instruction, input, output (+ system, history) | system?, [user, assistant]*       |
| completion  | prompt, completion                             | user, assistant                   |
| text        | text                                           | one assistant turn (raw text)     |

Problems are reported through `err(code, message)` and conversion goes on where it can, so a
row shows all its problems at once; a row with any error is rejected by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dsft.data.conversation import ROLES
from dsft.errors import UserError

Err = Callable[[str, str], None]
LAYOUTS = ("chat", "sharegpt", "instruction", "completion", "text")
# A converter whose messages do not stand at the same index in the user's record puts, under this
# key, where each one came from ("conversations[1]"); `convert` hands them to its caller.
POSITIONS = "_positions"
_MESSAGE_AT = re.compile(r"\bmessages\[(\d+)\]")


def in_user_terms(message: str, positions: list[str] | None) -> str:
    """`messages[2] ...` (the converted conversation) as `conversations[1] ...` (the user's record)."""
    if not positions:
        return message
    return _MESSAGE_AT.sub(lambda m: positions[int(m.group(1))] if int(m.group(1)) < len(positions) else m.group(0),
                           message)


_REQUIRED = {"chat": ("messages",), "sharegpt": ("conversations",), "instruction": ("instruction",),
             "completion": ("prompt", "completion"), "text": ("text",)}
_LAYOUT_KEYS = frozenset({"messages", "conversations", "instruction", "input", "output", "history", "system", "prompt",
                "completion", "text", "tools", "functions", "parallel_tool_calls", "metadata", "id"})
_PLAIN_KEYS = frozenset(("role", "content", "name", "tool_call_id", "weight"))
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "function_call": "call", "observation": "tool", "tool": "tool",
                   "function": "tool"}


def detect(record: dict[str, Any]) -> str | None:
    if "messages" in record:
        return "chat"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "instruction"
    if "prompt" in record and "completion" in record:
        return "completion"
    if "text" in record:
        return "text"
    return None


def convert(record: dict[str, Any], err: Err, layout: str | None = None,
            tools_fn: Callable[[Any, Any, Err], list | None] | None = None,
            positions: list[str] | None = None) -> tuple[str | None, dict | None]:
    """Record -> (layout, canonical dict) or (layout, None) when nothing usable remains.

    `tools_fn` turns the raw `tools`/`functions` values into declarations; the scanner passes
    a cached one, because most datasets repeat the same tool list on every row. `positions`, if
    given, receives where each message stands in the record when that is not `messages[i]`.
    """
    if layout is None:
        layout = detect(record)
        if layout is None:
            keys = ", ".join(sorted(record)[:8]) or "none"
            err("unknown_layout", f"no known layout matches the keys ({keys})")
            return None, None
    else:
        missing = [k for k in _REQUIRED[layout] if k not in record]
        if missing:
            err("layout_mismatch", f"--format {layout} needs {', '.join(missing)}")
            return layout, None
    conv = _CONVERTERS[layout](record, err, tools_fn or tools_from)
    if conv is None:
        return layout, None
    if positions is not None:
        positions.extend(conv.get(POSITIONS) or ())
    conv.pop(POSITIONS, None)
    meta = record.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        err("invalid_field", f"metadata must be an object, not {type_name(meta)}")
        meta = None
    metadata = dict(meta) if meta else {}
    if "id" in record:
        metadata["id"] = record["id"]
    if not _LAYOUT_KEYS.issuperset(record):
        for key, value in record.items():  # unknown columns are kept, never dropped
            if key not in _LAYOUT_KEYS and key not in metadata:
                metadata[key] = value
    metadata["layout"] = layout
    conv["metadata"] = metadata
    return layout, conv


# ---------------------------------------------------------------- chat (OpenAI)

def _chat(record: dict[str, Any], err: Err, tools_fn) -> dict | None:
    msgs = record["messages"]
    if not isinstance(msgs, list):
        err("invalid_field", f"messages must be a list, not {type_name(msgs)}")
        return None
    out: list[dict] = []
    legacy_pending: dict[str, list[str]] = {}  # name -> ids of legacy function_call turns
    for i, m in enumerate(msgs):
        if type(m) is dict and m.get("role") == "assistant" and isinstance(m.get("content"), str) \
                and m["content"].lstrip().startswith("<think>"):
            m = _reasoning_from_content(m, i, err)
        if type(m) is dict and _PLAIN_KEYS.issuperset(m) and m.get("role") in ROLES and type(m.get("content")) is str:
            out.append(m)  # already canonical: the common case, passed through as is
            continue
        if not isinstance(m, dict):
            err("invalid_field", f"messages[{i}] must be an object, not {type_name(m)}")
            continue
        role = m.get("role")
        if role == "developer":
            role = "system"
        msg: dict[str, Any] = {"role": role}
        content = _content(m.get("content"), f"messages[{i}]", err)
        if content is not None:  # the canonical form omits what is None
            msg["content"] = content
        if role == "function":  # legacy result of a function_call
            msg["role"] = "tool"
            ids = legacy_pending.get(m.get("name"), [])
            msg["tool_call_id"] = ids.pop(0) if ids else None
        elif role not in ROLES:
            err("unknown_role", f"messages[{i}].role is {role!r}; use system, user, assistant or tool")
            continue
        calls, legacy = m.get("tool_calls"), m.get("function_call")
        if calls:
            if not isinstance(calls, list):
                err("invalid_field", f"messages[{i}].tool_calls must be a list")
            else:
                msg["tool_calls"] = [c for j, raw in enumerate(calls)
                                     if (c := _call(raw, f"messages[{i}].tool_calls[{j}]", f"call_{i}_{j}", err))]
        elif legacy:
            call = _call(legacy, f"messages[{i}].function_call", f"call_{i}_0", err)
            if call:
                msg["tool_calls"] = [call]
                legacy_pending.setdefault(call["name"], []).append(call["id"])
        for key in ("tool_call_id", "name", "weight"):
            if m.get(key) is not None:
                msg[key] = m[key]
        reasoning = m.get("reasoning_content") or m.get("reasoning")
        if reasoning is not None:
            msg["reasoning"] = reasoning
        out.append(msg)
    conv: dict[str, Any] = {"messages": out}
    tools = tools_fn(record.get("tools"), record.get("functions"), err)
    if tools is not None:
        conv["tools"] = tools
    if record.get("parallel_tool_calls") is not None:
        conv["parallel_tool_calls"] = record["parallel_tool_calls"]
    return conv


def _reasoning_from_content(m: dict, i: int, err: Err) -> dict:
    """`<think>REASONING</think>ANSWER` written in an assistant's content (R1's raw output) becomes
    reasoning_content + content, so each format renders (and drops or trains) it by its own rule."""
    text = m["content"].lstrip()[len("<think>"):]
    if "</think>" not in text:
        err("reasoning_unclosed", f"messages[{i}].content opens <think> and never closes it")
        return m
    reasoning, _, answer = text.partition("</think>")
    out = {**m, "content": answer.lstrip("\n")}
    if not (m.get("reasoning_content") or m.get("reasoning")):
        out["reasoning_content"] = reasoning.strip("\n")
    return out


def _content(value: Any, where: str, err: Err) -> Any:
    """Plain text, or OpenAI content parts of type text joined; other part types are refused."""
    if not isinstance(value, list):
        return value
    texts = []
    for k, part in enumerate(value):
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type_name(part)
            err("unsupported_content", f"{where}.content[{k}] is a {kind!r} part; only text parts can be trained")
    return "".join(texts)


def _call(c: Any, where: str, default_id: str, err: Err) -> dict | None:
    if not isinstance(c, dict):
        err("invalid_field", f"{where} must be an object, not {type_name(c)}")
        return None
    if c.get("type", "function") != "function":
        err("invalid_field", f"{where}.type is {c.get('type')!r}; only 'function' calls are supported")
        return None
    fn = c.get("function", c)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        err("invalid_field", f"{where} has no function name")
        return None
    return {"id": str(c.get("id") or default_id), "name": fn["name"],
            "arguments": parse_arguments(fn.get("arguments"), f"{where}.arguments", err)}


def parse_arguments(args: Any, where: str, err: Err) -> dict:
    """Arguments as a dict: a JSON object string (OpenAI) or an object already (many datasets)."""
    if args is None:
        return {}
    if isinstance(args, str):
        if not args.strip():
            return {}
        try:
            args = orjson.loads(args)
        except orjson.JSONDecodeError as e:
            err("invalid_arguments_json", f"{where} is not JSON: {e.msg} (char {e.pos + 1})")
            return {}
    if not isinstance(args, dict):
        err("invalid_arguments_json", f"{where} is {type_name(args)}, not a JSON object")
        return {}
    return args


def tools_from(tools: Any, functions: Any, err: Err) -> list[dict] | None:
    if tools is None and functions is None:
        return None
    specs: list[dict] = []
    for field, value in (("tools", tools), ("functions", functions)):
        if value is None:
            continue
        if isinstance(value, str):  # ShareGPT keeps tools as a JSON string
            try:
                value = orjson.loads(value) if value.strip() else []
            except orjson.JSONDecodeError as e:
                err("invalid_tools", f"{field} is a string that is not JSON: {e.msg}")
                continue
        if not isinstance(value, list):
            err("invalid_tools", f"{field} must be a list, not {type_name(value)}")
            continue
        for k, t in enumerate(value):
            spec = _tool(t, f"{field}[{k}]", err)
            if spec:
                specs.append(spec)
    return specs


def _tool(t: Any, where: str, err: Err) -> dict | None:
    if not isinstance(t, dict):
        err("invalid_tools", f"{where} must be an object, not {type_name(t)}")
        return None
    if "function" in t:
        if t.get("type", "function") != "function":
            err("invalid_tools", f"{where}.type is {t.get('type')!r}; only function tools are supported")
            return None
        t = t["function"]
    if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
        err("invalid_tools", f"{where} has no function name")
        return None
    params = t.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        err("invalid_tools", f"{where}.parameters must be a JSON Schema object, not {type_name(params)}")
        return None
    desc = t.get("description")
    return {"name": t["name"], "description": desc if isinstance(desc, str) else "", "parameters": params}


def load_tools(path: Path) -> list[dict]:
    """A tools file: a list of OpenAI tool specs, or {"tools": [...]} as in the guide (6.1)."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise UserError(f"cannot read tools file {path}: {e.strerror}", "check the --tools path") from None
    except orjson.JSONDecodeError as e:
        raise UserError(f"tools file {path} is not JSON: {e.msg} (line {e.lineno})", "fix the JSON") from None
    if isinstance(raw, dict) and "tools" in raw:
        raw = raw["tools"]
    problems: list[str] = []
    specs = tools_from(raw, None, lambda code, msg: problems.append(msg))
    if problems or not specs:
        raise UserError(f"tools file {path}: {problems[0] if problems else 'no tools declared'}",
                        'give a list of {"type": "function", "function": {"name", "description", "parameters"}}')
    return specs


# ---------------------------------------------------------------- ShareGPT

def _sharegpt(record: dict[str, Any], err: Err, tools_fn) -> dict | None:
    turns = record["conversations"]
    if not isinstance(turns, list):
        err("invalid_field", f"conversations must be a list, not {type_name(turns)}")
        return None
    out: list[dict] = []
    positions: list[str] = []  # where each message stands in the user's record, for the checks' messages
    if isinstance(record.get("system"), str) and record["system"].strip():
        out.append({"role": "system", "content": record["system"]})
        positions.append("system")
    pending: list[dict] = []
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            err("invalid_field", f"{where} must be an object, not {type_name(turn)}")
            continue
        role = _SHAREGPT_ROLES.get(turn.get("from"))
        value = turn.get("value")
        if role is None:
            err("unknown_role", f"{where}.from is {turn.get('from')!r}; use human, gpt, system, "
                                "function_call or observation")
            continue
        if role == "call":
            calls = _sharegpt_calls(value, where, i, err)
            msg: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
            pending = list(calls)
        elif role == "tool":
            call = pending.pop(0) if pending else None
            msg = {"role": "tool", "content": value, "tool_call_id": call and call["id"],
                   "name": call and call["name"]}
        else:
            msg = {"role": role, "content": value}
        if turn.get("weight") is not None:
            msg["weight"] = turn["weight"]
        out.append(msg)
        positions.append(where)
    conv: dict[str, Any] = {"messages": out, POSITIONS: positions}
    tools = tools_fn(record.get("tools"), None, err)
    if tools is not None:
        conv["tools"] = tools
    return conv


def _sharegpt_calls(value: Any, where: str, i: int, err: Err) -> list[dict]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            err("invalid_arguments_json", f"{where}.value is not JSON: {e.msg}")
            return []
    items = value if isinstance(value, list) else [value]
    return [c for j, item in enumerate(items) if (c := _call(item, f"{where}.value[{j}]", f"call_{i}_{j}", err))]


# ---------------------------------------------------------------- instruction, completion, text

def _instruction(record: dict[str, Any], err: Err, tools_fn=None) -> dict | None:
    out: list[dict] = []
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        out.append({"role": "system", "content": system})
    history = record.get("history") or []
    if not isinstance(history, list):
        err("invalid_field", "history must be a list of [instruction, response] pairs")
        history = []
    for k, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            err("invalid_field", f"history[{k}] must be an [instruction, response] pair")
            continue
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    prompt, extra = record.get("instruction"), record.get("input")
    if isinstance(prompt, str) and isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n{extra}"
    out += [{"role": "user", "content": prompt}, {"role": "assistant", "content": record.get("output")}]
    return {"messages": out}


def _completion(record: dict[str, Any], err: Err, tools_fn=None) -> dict | None:
    return {"messages": [{"role": "user", "content": record.get("prompt")},
                         {"role": "assistant", "content": record.get("completion")}]}


def _text(record: dict[str, Any], err: Err, tools_fn=None) -> dict | None:
    return {"messages": [{"role": "assistant", "content": record.get("text")}]}


_CONVERTERS = {"chat": _chat, "sharegpt": _sharegpt, "instruction": _instruction,
               "completion": _completion, "text": _text}


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
