"""Llama 3.1's chat format with JSON tool calls: the R1-Distill-Llama bases' own family, and any
Llama-3 Instruct model. Not a DeepSeek format; here so such a base trains, evaluates and serves
with the same data and metrics.

Sources (read, not copied): meta-llama/llama-models `models/llama3_1/api/chat_format.py` @ 0b8d6338
(headers `<|start_header_id|>ROLE<|end_header_id|>\\n\\n`, `<|eot_id|>` after every message,
`<|begin_of_text|>` once; custom tool calls read "with or without the python tag"), and the
Hugging Face template of Llama-3.1-Instruct as vLLM carries it (vllm-project/vllm
`examples/tool_chat_template_llama3.1_json.jinja` @ 54522760): the system header's
`Cutting Knowledge Date` / `Today Date` lines (`Environment: ipython` first when tools are given),
the tools as indented JSON in the first user message with the instruction to answer in
`{"name": ..., "parameters": ...}`, a call as that JSON object, results in an `ipython` turn.

Where dsft differs on purpose: a result is written as the tool returned it (Meta's encoder does;
the HF template JSON-quotes a string result, vLLM's wraps it in `{"output": ...}`); content is
not trimmed; the instruction sentences are spaced. The format has one call per turn and no text
beside a call: a conversation that needs either is refused by name, never rendered wrong.
"""

from __future__ import annotations

import json

from dsft.chat.encoder import Family, Options, Piece, RenderError
from dsft.chat.parse import ParsedTurn, json_names
from dsft.data.conversation import Conversation, Message, ToolCall

BEGIN, EOT, EOM, PYTHON = "<|begin_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
DATES = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"  # the template's default date
TOOLS_INTRO = ("Given the following functions, please respond with a JSON for a function call with its proper "
               "arguments that best answers the given prompt.\n\n"
               'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
               'value}. Do not use variables.\n\n')


def header(role: str) -> str:
    return f"{HEADER_START}{role}{HEADER_END}\n\n"


class Llama3(Family):
    name = "llama3"
    generations = "Llama 3.1 / 3.2 / 3.3 Instruct (R1-Distill-Llama's base), not DeepSeek's own"
    eos = EOT
    tool_parser = "llama3_json"
    calls_open = '{"name": "'
    forced_call = '{"name": "'
    after_name = '", "parameters": '
    parallel_calls = False
    text_before_calls = False
    special_tokens = (BEGIN, EOT, EOM, PYTHON, HEADER_START, HEADER_END)

    def check(self, conv: Conversation, opts: Options) -> None:
        super().check(conv, opts)
        for m in conv.messages:
            if m.tool_calls and len(m.tool_calls) > 1:
                raise RenderError(f"the {self.name} format ({self.generations}) has one tool call per turn; "
                                  "split parallel calls into rounds or train a DeepSeek or chatml model")
            if m.tool_calls and m.content:
                raise RenderError(f"the {self.name} format has no text beside a tool call; drop the content "
                                  "of calling turns or train a DeepSeek or chatml model")
        if conv.tools and not any(m.role == "user" for m in conv.messages):
            raise RenderError(f"the {self.name} format puts the tools in the first user message, and there is none")

    def calls(self, m: Message) -> str:
        return "".join(f'{{"name": "{c.name}", "parameters": {json.dumps(c.arguments, ensure_ascii=False)}}}'
                       for c in m.tool_calls or ())

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        messages = list(conv.messages)
        system = ""
        if messages and messages[0].role == "system":
            system = messages.pop(0).content or ""
        out = [Piece(BEGIN + header("system") + ("Environment: ipython\n" if conv.tools else "") + DATES
                     + system + EOT)]
        tools_pending = bool(conv.tools)
        for m in messages:
            if m.role == "user" and tools_pending:
                tools = "".join(json.dumps({"type": "function", "function": t.model_dump()}, ensure_ascii=False,
                                           indent=4) + "\n\n" for t in conv.tools)
                out.append(Piece(header("user") + TOOLS_INTRO + tools + (m.content or "") + EOT))
                tools_pending = False
            elif m.role in ("system", "user"):
                out.append(Piece(header(m.role) + (m.content or "") + EOT))
            elif m.role == "assistant":
                out += [Piece(header("assistant")), Piece((m.content or "") + self.calls(m) + EOT, trained=m.trained)]
            elif m.role == "tool":
                out.append(Piece(header("ipython") + (m.content or "") + EOT))
        if prompt:
            out.append(Piece(header("assistant")))
        return out

    def stops(self) -> tuple[str, ...]:
        return (EOT, EOM)

    def parse_reply(self, text: str, id_prefix: str) -> ParsedTurn:
        text = self.until_stop(text)
        body = text.removeprefix(PYTHON).strip()
        if not body.startswith('{"name"') and not (text.startswith(PYTHON) and body.startswith("{")):
            return ParsedTurn(content=text)
        try:
            call = json.loads(body)
        except json.JSONDecodeError as e:
            return ParsedTurn(None, [], False, f"call 0: not JSON: {e.msg}", named=json_names([body]))
        arguments = call.get("parameters", call.get("arguments")) if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not isinstance(arguments, dict):
            return ParsedTurn(None, [], False, 'call 0: not {"name": ..., "parameters": {...}}', named=json_names([body]))
        return ParsedTurn(None, [ToolCall(id=f"{id_prefix}0", name=call["name"], arguments=arguments)])
