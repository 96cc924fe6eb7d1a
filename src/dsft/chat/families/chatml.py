"""ChatML (`<|im_start|>ROLE\\n...<|im_end|>`) with Hermes-style tool calls: Qwen2 / Qwen2.5,
SmolLM2 and the other models whose template speaks it. Not a DeepSeek format, but the one the
R1-Distill-Qwen bases' relatives and many small models share, so a user can finetune and serve them
with the same data, metrics and gateway.

Source (read, not copied; the golden tests cite it): Qwen2.5-Instruct's chat template, as rendered
by transformers in modelscope/AgentJet `documents/tokenizer_nodes.md` (assistant turns with and
without content before `<tool_call>` blocks) and as quoted in jacksonsc007/frugal-agent
`utils/others/chat_template.py` (the tools block, `<tool_response>` turns). Layout:

- the first system message (and the tools block after it) in a `system` turn; a later system
  message is a turn of its own where it stands;
- tools: `# Tools` ... `<tools>` one OpenAI tool object per line `</tools>` and the call format;
- a call: `<tool_call>\\n{"name": "NAME", "arguments": ARGS}\\n</tool_call>`, calls one per line,
  after the content (and a newline) when there is content;
- tool results: consecutive results in one `user` turn, each `\\n<tool_response>\\nTEXT\\n</tool_response>`.

Where dsft differs on purpose: no default system prompt (Qwen2.5's "You are Qwen, created by
Alibaba Cloud..." and SmolLM2's own are each one model's; a conversation that wants one carries it),
and the tools block then opens the system turn, as Qwen3's template does.
"""

from __future__ import annotations

import json
import re

from dsft.chat.encoder import Family, Options, Piece
from dsft.chat.parse import ParsedTurn, json_names
from dsft.data.conversation import Conversation, Message, ToolCall

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
TOOLS_INTRO = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_OUTRO = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
               "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
               '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
_CALL = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.S)


class ChatML(Family):
    name = "chatml"
    generations = "ChatML models (Qwen2, Qwen2.5, SmolLM2, Hermes), not DeepSeek's own"
    eos = IM_END
    tool_parser = "hermes"
    calls_open = CALL_OPEN
    forced_call = CALL_OPEN + '\n{"name": "'
    after_name = '", "arguments": '
    special_tokens = (IM_START, IM_END, CALL_OPEN, CALL_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE)

    def tools_block(self, conv: Conversation) -> str:
        lines = "".join("\n" + json.dumps({"type": "function", "function": t.model_dump()}, ensure_ascii=False)
                        for t in conv.tools)
        return TOOLS_INTRO + lines + TOOLS_OUTRO

    def calls(self, m: Message) -> str:
        return "\n".join(f'{CALL_OPEN}\n{{"name": "{c.name}", "arguments": '
                         f"{json.dumps(c.arguments, ensure_ascii=False)}}}\n{CALL_CLOSE}" for c in m.tool_calls or ())

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        messages, out = conv.messages, []
        first_system = bool(messages) and messages[0].role == "system"
        if conv.tools or first_system:
            text = messages[0].content or "" if first_system else ""
            if conv.tools:
                text += ("\n\n" if first_system else "") + self.tools_block(conv)
            out.append(Piece(f"{IM_START}system\n{text}{IM_END}\n"))
        for i, m in enumerate(messages):
            if i == 0 and first_system:
                continue
            if m.role in ("system", "user"):
                out.append(Piece(f"{IM_START}{m.role}\n{m.content or ''}{IM_END}\n"))
            elif m.role == "assistant":
                content, calls = m.content or "", self.calls(m)
                body = content + ("\n" if content and calls else "") + calls
                out += [Piece(f"{IM_START}assistant\n"), Piece(body + IM_END, trained=m.trained), Piece("\n")]
            elif m.role == "tool":
                opens = i == 0 or messages[i - 1].role != "tool"
                closes = i == len(messages) - 1 or messages[i + 1].role != "tool"
                out.append(Piece((f"{IM_START}user" if opens else "") + f"\n{RESPONSE_OPEN}\n{m.content or ''}\n"
                                 f"{RESPONSE_CLOSE}" + (f"{IM_END}\n" if closes else "")))
        if prompt:
            out.append(Piece(f"{IM_START}assistant\n"))
        return out

    def parse_reply(self, text: str, id_prefix: str) -> ParsedTurn:
        text = text.split(IM_END, 1)[0]
        if CALL_OPEN not in text:
            return ParsedTurn(content=text)
        content = text.split(CALL_OPEN, 1)[0].removesuffix("\n") or None
        calls: list[ToolCall] = []
        blocks = _CALL.findall(text)
        names = json_names(text.split(CALL_OPEN)[1:])  # closed or not
        for k, raw in enumerate(blocks):
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as e:
                return ParsedTurn(content, calls, False, f"call {k}: not JSON: {e.msg}", named=names)
            arguments = body.get("arguments") if isinstance(body, dict) else None
            if isinstance(arguments, str):  # some models write the arguments as a JSON string
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    arguments = None
            if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not isinstance(arguments, dict):
                return ParsedTurn(content, calls, False, f'call {k}: not {{"name": ..., "arguments": {{...}}}}', named=names)
            calls.append(ToolCall(id=f"{id_prefix}{k}", name=body["name"], arguments=arguments))
        if text.count(CALL_OPEN) != len(blocks):
            return ParsedTurn(content, calls, False, "a <tool_call> block is not closed", named=names)
        return ParsedTurn(content, calls)
