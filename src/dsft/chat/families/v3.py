"""The `<｜tool▁calls▁begin｜>function<｜tool▁sep｜>NAME` + ```json layout: DeepSeek-V2.5, V3, R1.

Sources (read, not copied; the golden tests cite each one):
- V3: the official template as embedded in DeepSeek-V3's GGUF (huggingface.js
  `packages/ollama-utils/src/chat-template-automap.ts`, `library/deepseek-v3:671b`), and V3-0324's.
- R1 / R1-Distill: `ggml-org/llama.cpp` `models/templates/deepseek-ai-DeepSeek-R1-Distill-*.jinja`,
  huggingface.js `packages/jinja/test/e2e.test.js` ("deepseek-ai/DeepSeek-R1").
Where dsft differs from them on purpose (their state is never reset on a second tool round, a
single call is never closed, `tools` are never rendered), `chat/templates/README.md` says so.
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
    function_json,
    shows_reasoning,
)
from dsft.data.conversation import Conversation, Message

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUTPUTS_BEGIN, OUTPUTS_END = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>"
OUTPUT_BEGIN, OUTPUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"
TOOLS_HEADER = "## Tools\nYou can call these functions:"  # dsft's: the official V3 template renders no tools


def system_text(conv: Conversation, tools_block: str = "", last_only: bool = False) -> str:
    """The system messages joined by a blank line, then the family's tools block (when it has tools)."""
    systems = [m.content or "" for m in conv.messages if m.role == "system"]
    text = "\n\n".join(systems[-1:] if last_only else systems)
    return text + ("\n\n" if text and tools_block else "") + tools_block


class V3Layout(Family):
    """V3's token layout with dsft's fixes; R1 adds the `<think>\\n` prompt and reasoning."""

    name = "deepseek_v3"
    generations = "DeepSeek-V3, V3-0324"
    tool_parser = "deepseek_v3"
    last_system_only = False
    think_prompt = ""  # R1: "<think>\n" after the generation prompt's <｜Assistant｜>

    def system(self, conv: Conversation) -> str:
        block = "\n".join([TOOLS_HEADER, *(function_json(t, compact=True) for t in conv.tools)]) if conv.tools else ""
        return system_text(conv, block, self.last_system_only)

    def calls(self, m: Message) -> str:
        if not m.tool_calls:
            return ""
        body = "\n".join(f"{CALL_BEGIN}function{SEP}{c.name}\n```json\n"
                         f"{json.dumps(c.arguments, ensure_ascii=False, separators=(',', ':'))}\n```{CALL_END}"
                         for c in m.tool_calls)
        return CALLS_BEGIN + body + CALLS_END

    def reply(self, i: int, m: Message, messages: list[Message], opts: Options, after_user: bool) -> list[Piece]:
        """The assistant's turn after its opener; R1 opens `<think>\\n` and trains the reasoning."""
        body = (m.content or "") + self.calls(m) + EOS
        if self.think_prompt and after_user and shows_reasoning(i, messages, opts):
            thought = (m.reasoning or "").strip("\n")
            # "<think>\n" + "\n</think>" would tokenize "\n\n" across the prompt's end: an empty thought
            # closes right after the prompt's newline, so the prompt's tokens stay a prefix of these
            return [Piece(self.think_prompt), Piece((thought + "\n" if thought else "") + END_THINK + "\n\n" + body,
                                                    trained=m.trained)]
        return [Piece(body, trained=m.trained)]

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        out, after_tools = [Piece(bos + self.system(conv))], False
        messages = conv.messages
        for i, m in enumerate(messages):
            if m.role == "user":
                out.append(Piece((OUTPUTS_END if after_tools else "") + USER + (m.content or "")))
                after_tools = False
            elif m.role == "assistant":
                out.append(Piece(OUTPUTS_END if after_tools else ASSISTANT))
                out.extend(self.reply(i, m, messages, opts, after_user=not after_tools))
                after_tools = False
            elif m.role == "tool":
                out.append(Piece(("\n" if after_tools else OUTPUTS_BEGIN) + OUTPUT_BEGIN + (m.content or "") + OUTPUT_END))
                after_tools = True
        if prompt:
            out.append(Piece(OUTPUTS_END if after_tools else ASSISTANT + self.think_prompt))
        elif after_tools:
            out.append(Piece(OUTPUTS_END))
        return out


class V25(V3Layout):
    name = "deepseek_v25"
    generations = "DeepSeek-V2.5, V2-Chat-0628"
    last_system_only = True  # its template keeps only the last system message


class R1(V3Layout):
    name = "deepseek_r1"
    generations = "DeepSeek-R1, R1-0528, R1-Distill-Qwen and -Llama"
    tool_parser = "deepseek_v3"
    reasoning = True
    thinking_default = True
    think_prompt = THINK + "\n"
    forced_call = END_THINK + "\n\n" + V3Layout.forced_call  # a call follows an empty thought
