"""The formats before DeepSeek's chat tokens: DeepSeek LLM chat / V2 (`User:`/`Assistant:`) and
deepseek-coder-instruct v1 (`### Instruction:` / `### Response:`, `<|EOT|>`). Neither has tools
or reasoning; a conversation that needs them is refused by `Family.check`.

Sources: `ggml-org/llama.cpp` `tests/test-chat-template.cpp` (commit
03f94f19a2c4c9d039fa1a84838fe3e2110cc28d), cases "DeepSeek-V2" and
"deepseek-ai/deepseek-coder-33b-instruct", which quote the models' own Hugging Face templates.
"""

from __future__ import annotations

from dsft.chat.encoder import EOS, Family, Options, Piece
from dsft.chat.parse import parse_assistant
from dsft.data.conversation import Conversation

EOT = "<|EOT|>"
# The coder template's own default system prompt, exactly ("Deepseek", no final period, a newline).
CODER_SYSTEM = ("You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek "
                "Company, and you only answer questions related to computer science. For politically sensitive "
                "questions, security and privacy issues, and other non-computer science questions, you will "
                "refuse to answer\n")


class LLM(Family):
    name = "deepseek_llm"
    generations = "DeepSeek LLM 7B/67B chat, DeepSeek-V2(-Lite)-Chat, DeepSeek-Coder-V2(-Lite)-Instruct"
    tools = False

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        out = [Piece(bos)]
        for m in conv.messages:  # system text stays where it stands, as in the official template
            if m.role == "system":
                out.append(Piece((m.content or "") + "\n\n"))
            elif m.role == "user":
                out.append(Piece("User: " + (m.content or "") + "\n\n"))
            elif m.role == "assistant":  # the prompt is "Assistant:" (no space): the reply starts with it
                out += [Piece("Assistant:"), Piece(" " + (m.content or "") + EOS, trained=m.trained)]
        if prompt:
            out.append(Piece("Assistant:"))
        return out

    def parse_reply(self, text: str, id_prefix: str):
        return parse_assistant(text.removeprefix(" "), id_prefix)  # the space after "Assistant:"


class Coder(Family):
    name = "deepseek_coder"
    generations = "deepseek-coder-1.3b/6.7b/33b-instruct (v1, v1.5)"
    tools = False
    eos = EOT
    special_tokens = (EOT,)

    def pieces(self, conv: Conversation, opts: Options, bos: str, prompt: bool) -> list[Piece]:
        out = [Piece(bos + ("" if any(m.role == "system" for m in conv.messages) else CODER_SYSTEM))]
        for m in conv.messages:
            if m.role == "system":
                out.append(Piece(m.content or ""))
            elif m.role == "user":
                out.append(Piece("### Instruction:\n" + (m.content or "") + "\n"))
            elif m.role == "assistant":
                out += [Piece("### Response:\n"), Piece((m.content or "") + "\n" + EOT, trained=m.trained), Piece("\n")]
        if prompt:
            out.append(Piece("### Response:\n"))
        return out

    def stops(self) -> tuple[str, ...]:
        return (EOT, EOS)

    def parse_reply(self, text: str, id_prefix: str):
        return parse_assistant(text.split(EOT, 1)[0].removesuffix("\n"), id_prefix)  # the reply ends "\n<|EOT|>"
