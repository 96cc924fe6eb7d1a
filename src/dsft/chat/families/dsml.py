"""DeepSeek-V3.2 and V4: DSML tool calls, for which DeepSeek ships Python encoders and no template.

Sources, read and re-written (not copied):
- V3.2: DeepSeek's `encoding/encoding_dsv32.py`, as mirrored in `ml-explore/mlx-lm`
  `mlx_lm/chat_templates/deepseek_v32.py` (commit 4a9159aaf1d9b62dd2002f0d238f5caa28c2ad06); its
  published test pair is `ai-dynamo/dynamo` `lib/llm/tests/data/deepseek-v3.2/test_{input.json,output.txt}`
  (commit ab84711406d9625ec863c973365a3a49ed7c253b), reproduced by tests/chat/test_families.py.
- V4: DeepSeek's `encoding/encoding_dsv4.py`, as in `vllm-project/vllm`
  `vllm/tokenizers/deepseek_v4_encoding.py` (commit 591f7b5eab1ab5be7e9a893926ebaa486974fea6).

Both put tool schemas in the system prompt and calls in DSML markup: `<｜DSML｜invoke name=...>`
holding one `<｜DSML｜parameter name=... string="true|false">` per argument (strings as they are,
everything else as JSON). V3.2 appends tool results after the calling turn's end token as
`<function_results>`; V4 gives them to a user turn as `<tool_result>` blocks. Reasoning shows only
after the last user turn (V4 keeps every turn's when the conversation declares tools).
"""

from __future__ import annotations

import json
import re
from typing import Any

from dsft.chat.encoder import ASSISTANT, END_THINK, EOS, THINK, USER, Family, Options, Piece, last_user_index
from dsft.chat.families.v3 import system_text
from dsft.chat.parse import ParsedTurn
from dsft.data.conversation import Conversation, Message, ToolCall

DSML = "｜DSML｜"

V32_TOOLS = """## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<{dsml}function_calls>" block like the following as part of your reply to the user:
<{dsml}function_calls>
<{dsml}invoke name="$FUNCTION_NAME">
<{dsml}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{dsml}parameter>
...
</{dsml}invoke>
<{dsml}invoke name="$FUNCTION_NAME2">
...
</{dsml}invoke>
</{dsml}function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects \
should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for \
other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking \
block. Here is an example:

<{dsml}function_calls>
...
</{dsml}function_calls>

<function_results>
...
</function_results>

{think}...thinking about results{end_think}

Here are the functions available in JSONSchema format:
<functions>
{schemas}
</functions>
"""

V4_TOOLS = """## Tools

You have access to a set of tools to help answer the user's question. You can invoke tools by writing a \
"<{dsml}tool_calls>" block like the following:

<{dsml}tool_calls>
<{dsml}invoke name="$TOOL_NAME">
<{dsml}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{dsml}parameter>
...
</{dsml}invoke>
<{dsml}invoke name="$TOOL_NAME2">
...
</{dsml}invoke>
</{dsml}tool_calls>

String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, \
arrays, objects), pass the value in JSON format and set `string="false"`.

If thinking_mode is enabled (triggered by {think}), you MUST output your complete reasoning inside \
{think}...{end_think} BEFORE any tool calls or final response.

Otherwise, output directly after {end_think} with tool calls or final response.

### Available Tool Schemas

{schemas}

You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.
"""

REASONING_EFFORT_MAX = (
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n")


def _schemas(conv: Conversation) -> str:
    return "\n".join(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters},
                                ensure_ascii=False) for t in conv.tools or ())


def _fill(template: str, conv: Conversation) -> str:
    return (template.replace("{dsml}", DSML).replace("{think}", THINK).replace("{end_think}", END_THINK)
            .replace("{schemas}", _schemas(conv)))


def invoke(call: ToolCall) -> str:
    params = "\n".join(
        f'<{DSML}parameter name="{k}" string="{"true" if isinstance(v, str) else "false"}">'
        f'{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}</{DSML}parameter>'
        for k, v in call.arguments.items())
    return f'<{DSML}invoke name="{call.name}">\n{params}\n</{DSML}invoke>'


def calls_block(calls: list[ToolCall] | None, block: str) -> str:
    if not calls:
        return ""
    return f"\n\n<{DSML}{block}>\n" + "\n".join(invoke(c) for c in calls) + f"\n</{DSML}{block}>"


class _DSML(Family):
    reasoning = True
    block = ""
    tools_template = ""
    after_name = '">'
    special_tokens = (DSML,)

    def __init__(self):
        self.calls_open = f"<{DSML}{self.block}>"
        self.forced_call = f'\n\n<{DSML}{self.block}>\n<{DSML}invoke name="'

    def system(self, conv: Conversation) -> str:
        # official: tools belong to the system message; without one, the block stands alone
        return system_text(conv, _fill(self.tools_template, conv) if conv.tools else "")

    def parse_reply(self, text: str, id_prefix: str) -> ParsedTurn:
        return parse_dsml(text, self.block, id_prefix)


class V32(_DSML):
    name = "deepseek_v32"
    generations = "DeepSeek-V3.2, V3.2-Exp"
    block = "function_calls"
    tools_template = V32_TOOLS
    tool_parser = "deepseek_v32"

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        messages = [m for m in conv.messages if m.role != "system"]
        last_user = last_user_index(messages)

        def thinks(j: int) -> bool:  # does assistant turn j (or the next reply, past the end) show reasoning?
            return opts.thinking and (j > last_user or opts.reasoning_turns == "all")

        out = [Piece(bos + self.system(conv))]
        expected = 0  # results still due to the last calling turn
        for i, m in enumerate(messages):
            if m.role == "user":
                out.append(Piece(USER + (m.content or "") + ASSISTANT + (THINK if thinks(i + 1) else END_THINK)))
            elif m.role == "assistant":
                text = (m.reasoning or "") + END_THINK if thinks(i) else ""
                text += (m.content or "") + calls_block(m.tool_calls, self.block) + EOS
                out.append(Piece(text, trained=m.trained))
                expected = len(m.tool_calls or ())
            elif m.role == "tool":
                head = "\n\n<function_results>" if i and messages[i - 1].role != "tool" else ""
                expected -= 1
                tail = ("\n</function_results>\n\n" + (THINK if thinks(i + 1) else END_THINK)) if expected <= 0 else ""
                out.append(Piece(f"{head}\n<result>{m.content or ''}</result>{tail}"))
        return out


class V4(_DSML):
    name = "deepseek_v4"
    generations = "DeepSeek-V4 (Flash, Pro)"
    block = "tool_calls"
    tools_template = V4_TOOLS
    tool_parser = "deepseek_v4"

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        turns = merged_turns([m for m in conv.messages if m.role != "system"])
        last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=-1)
        keep_all = bool(conv.tools) or opts.reasoning_turns == "all"  # V4 drops no reasoning when tools are declared

        def thinks(j: int) -> bool:
            return opts.thinking and (keep_all or j > last_user)

        head = bos + (REASONING_EFFORT_MAX if opts.thinking and opts.reasoning_effort == "max" else "")
        out = [Piece(head + self.system(conv))]
        for i, (role, m) in enumerate(turns):
            if role == "user":
                text = USER + m
                if i + 1 == len(turns) or turns[i + 1][0] == "assistant":
                    text += ASSISTANT + (THINK if thinks(i + 1) else END_THINK)
                out.append(Piece(text))
            else:
                text = (m.reasoning or "") + END_THINK if thinks(i) else ""
                text += (m.content or "") + calls_block(m.tool_calls, self.block) + EOS
                out.append(Piece(text, trained=m.trained))
        return out


def merged_turns(messages: list[Message]) -> list[tuple[str, Any]]:
    """V4's merge: tool results join the next user turn as `<tool_result>` blocks (in the order of
    the calls they answer), and consecutive user turns become one, their parts joined by a blank line."""
    turns: list[tuple[str, Any]] = []
    parts: list[str] = []
    results: list[Message] = []
    order: dict[str, int] = {}

    def flush():
        if results:
            results.sort(key=lambda r: order.get(r.tool_call_id or "", len(order)))
            parts[:0] = [f"<tool_result>{r.content or ''}</tool_result>" for r in results]
        if parts:
            turns.append(("user", "\n\n".join(parts)))
        parts.clear()
        results.clear()

    for m in messages:
        if m.role == "assistant":
            flush()
            turns.append(("assistant", m))
            order = {c.id: k for k, c in enumerate(m.tool_calls or ())}
        elif m.role == "tool":
            if parts:  # a result after user text: the text stays first, the result follows it
                parts.append(f"<tool_result>{m.content or ''}</tool_result>")
            else:
                results.append(m)
        else:
            parts.append(m.content or "")
    flush()
    return turns


_BLOCK = {b: re.compile(rf"\n*<{DSML}{b}>\n?(?P<body>.*?)(?P<end></{DSML}{b}>|$)", re.S)
          for b in ("function_calls", "tool_calls")}
_INVOKE = re.compile(rf'<{DSML}invoke name="(?P<name>[^"]*)">\n?(?P<body>.*?)</{DSML}invoke>', re.S)
_INVOKE_NAME = re.compile(rf'<{DSML}invoke name="(?P<name>[^"]*)"')  # closed or not
_PARAM = re.compile(rf'<{DSML}parameter name="(?P<name>[^"]*)" string="(?P<str>true|false)">(?P<value>.*?)'
                    rf'</{DSML}parameter>', re.S)


def parse_dsml(text: str, block: str, id_prefix: str = "call_") -> ParsedTurn:
    """A generated reply (reasoning already split off) -> content and DSML calls; a block that does
    not parse is a parse error (never returned as if it were the answer's text)."""
    text = text.split(EOS, 1)[0]
    found = _BLOCK[block].search(text)
    if not found:
        if f"<{DSML}" in text:
            return ParsedTurn(text or None, [], False, f"DSML markup outside a <{DSML}{block}> block")
        return ParsedTurn(text or None, [], True, "")
    content = text[:found.start()] or None
    body = found.group("body")
    names = [m.group("name") for m in _INVOKE_NAME.finditer(body)]
    calls: list[ToolCall] = []
    for k, inv in enumerate(_INVOKE.finditer(body)):
        args: dict[str, Any] = {}
        for p in _PARAM.finditer(inv.group("body")):
            if p.group("str") == "true":
                args[p.group("name")] = p.group("value")
                continue
            try:
                args[p.group("name")] = json.loads(p.group("value"))
            except json.JSONDecodeError as e:
                return ParsedTurn(content, calls, False, f"call {k} ({inv.group('name')}): parameter "
                                  f"{p.group('name')} is not JSON: {e.msg}", named=names)
        calls.append(ToolCall(id=f"{id_prefix}{k}", name=inv.group("name"), arguments=args))
    if not calls:
        return ParsedTurn(content, [], False, "tool-call block holds no complete call", named=names)
    if not found.group("end"):
        return ParsedTurn(content, calls, False, "tool-call block is not closed", named=names)
    return ParsedTurn(content, calls, True, "")
