"""DeepSeek-V3.1 (and V3.1-Terminus): one model, thinking and non-thinking.

Source: the official template, as in `ggml-org/llama.cpp` `models/templates/deepseek-ai-DeepSeek-V3.1.jinja`
(commit 0374c5b6e4c19370262d93e2c3f2a98c9af9fe1f) and `ollama/ollama` `model/renderers/deepseek31.jinja`.
Its layout: `<｜Assistant｜></think>` opens every reply given after a user turn (`<think>` in
thinking mode), calls are `NAME<｜tool▁sep｜>ARGS` chained without separators, tool outputs stand
bare after the calling turn's end token, and the answer follows them directly. Its template
renders no tool schemas; the model card gives a tools block for the system prompt, which dsft
uses (`TOOLS_BLOCK`, the model card's form).
"""

from __future__ import annotations

import json

from dsft.chat.encoder import (
    ASSISTANT,
    END_THINK,
    EOS,
    THINK,
    USER,
    Family,
    Options,
    Piece,
    arguments_json,
    shows_reasoning,
)
from dsft.chat.families.v3 import (
    CALL_BEGIN,
    CALL_END,
    CALLS_BEGIN,
    CALLS_END,
    OUTPUT_BEGIN,
    OUTPUT_END,
    SEP,
    system_text,
)
from dsft.data.conversation import Conversation, Message

TOOLS_BLOCK = (
    "## Tools\nYou have access to the following tools:\n\n{tools}\n"
    "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    f"{CALLS_BEGIN}{CALL_BEGIN}tool_call_name{SEP}tool_call_arguments{CALL_END}{{additional_tool_calls}}{CALLS_END}\n\n"
    "Where:\n- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces")


def tools_block(conv: Conversation) -> str:
    listed = "".join(f"### {t.name}\nDescription: {t.description}\n\nParameters: "
                     f"{json.dumps(t.parameters, ensure_ascii=False)}\n" for t in conv.tools or ())
    return TOOLS_BLOCK.replace("{tools}", listed)


class V31(Family):
    name = "deepseek_v31"
    generations = "DeepSeek-V3.1, V3.1-Terminus"
    reasoning = True
    tool_parser = "deepseek_v31"
    forced_call = CALLS_BEGIN + CALL_BEGIN
    after_name = SEP

    def system(self, conv: Conversation) -> str:
        return system_text(conv, tools_block(conv) if conv.tools else "")

    @staticmethod
    def calls(m: Message) -> str:
        if not m.tool_calls:
            return ""
        return CALLS_BEGIN + "".join(f"{CALL_BEGIN}{c.name}{SEP}{arguments_json(c)}{CALL_END}"
                                     for c in m.tool_calls) + CALLS_END

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        out, last = [Piece(bos + self.system(conv))], None
        messages = conv.messages
        for i, m in enumerate(messages):
            if m.role == "user":
                out.append(Piece(USER + (m.content or "")))
            elif m.role == "assistant":
                body = (m.content or "") + self.calls(m) + EOS
                if last == "user":  # after tool outputs the answer follows them directly
                    # its template opens every calling turn with </think>: calls are non-thinking
                    thinks = opts.thinking and not m.tool_calls and shows_reasoning(i, messages, opts)
                    out.append(Piece(ASSISTANT + (THINK if thinks else END_THINK)))
                    if thinks:
                        body = (m.reasoning or "") + END_THINK + body
                out.append(Piece(body, trained=m.trained))
            elif m.role == "tool":
                out.append(Piece(OUTPUT_BEGIN + (m.content or "") + OUTPUT_END))
            if m.role != "system":
                last = m.role
        if prompt and last == "user":
            out.append(Piece(ASSISTANT + (THINK if opts.thinking else END_THINK)))
        return out
