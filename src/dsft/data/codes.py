"""The catalogue of data findings: stable codes, their tier, and the fix for each.

Codes never change meaning once shipped (scripts match on them), in the style of OpenAI's
fine-tuning data checks. Errors mean the row cannot be trained on and is rejected; warnings
mean it can, but probably should not be as it is. A warning's `penalty` is what it costs in
dsft's quality score, so the scorer and the validator can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    title: str
    fix: str
    penalty: int = 0
    fatal: bool = False  # the whole input cannot be read: exit 2


_E, _W = "error", "warning"

CODES: dict[str, Code] = {c.code: c for c in (
    # The input as a whole.
    Code("file_not_found", _E, "input path does not exist", "check the path", fatal=True),
    Code("empty_file", _E, "input is empty", "give a file with at least one record", fatal=True),
    Code("binary_file", _E, "input is binary, not text", "give JSON Lines, JSON, CSV or Parquet", fatal=True),
    Code("unsupported_file", _E, "file type not recognised",
         "use .jsonl/.json/.csv/.tsv/.parquet, or content starting with { or [", fatal=True),
    Code("unreadable_file", _E, "input could not be read", "check the file's permissions and format", fatal=True),
    Code("not_utf8", _E, "text is not valid UTF-8", "re-save the file as UTF-8"),
    # The record as JSON.
    Code("invalid_json", _E, "record is not valid JSON", "fix the JSON syntax at the position given"),
    Code("truncated_record", _E, "record ends before its JSON is complete",
         "the record was cut off: restore its end or remove it"),
    Code("not_an_object", _E, "record is not a JSON object", "each record must be an object such as {\"messages\": [...]}"),
    Code("record_too_large", _E, "record is larger than the reader's limit", "split the record or raise --max-record-mb"),
    # Layout and fields.
    Code("unknown_layout", _E, "record matches no known layout",
         "use messages, conversations, instruction/output, prompt/completion or text (or --format)"),
    Code("invalid_field", _E, "a field has the wrong type or value", "correct the field named in the message"),
    Code("empty_messages", _E, "conversation has no messages", "add at least a user and an assistant message"),
    Code("unknown_role", _E, "message has a role dsft does not know", "use system, user, assistant or tool"),
    Code("unsupported_content", _E, "message content is not text", "dsft trains text models: keep only text parts"),
    Code("missing_content", _E, "message has no content and no tool calls", "give the message content"),
    Code("reasoning_unclosed", _E, "assistant content opens <think> and never closes it",
         "close the reasoning with </think> before the answer, or move it to reasoning_content"),
    Code("no_assistant_turn", _E, "nothing to learn: no assistant turn with weight 1",
         "add an assistant reply, or set weight 1 on one"),
    # Tools.
    Code("invalid_tools", _E, "tool declaration is malformed",
         "declare tools as {\"type\": \"function\", \"function\": {\"name\", \"parameters\"}}"),
    Code("invalid_tool_schema", _E, "tool parameters are not a valid JSON Schema", "fix the tool's parameters schema"),
    Code("duplicate_tool_name", _E, "two tools share a name", "give each declared tool a unique name"),
    Code("invalid_arguments_json", _E, "tool-call arguments are not a JSON object",
         "arguments must be a JSON object (or a string holding one)"),
    Code("arguments_schema_mismatch", _E, "tool-call arguments break the tool's schema",
         "make the arguments match the tool's parameters schema"),
    Code("undeclared_tool", _E, "call to a tool the example does not declare", "declare the tool or fix the name"),
    Code("orphan_tool_result", _E, "tool result answers no pending call",
         "give the tool message the tool_call_id of a call made before it"),
    Code("missing_tool_call_id", _E, "tool result does not say which call it answers", "add tool_call_id"),
    Code("unanswered_tool_call", _E, "tool call has no result before the conversation goes on",
         "add a tool message with its tool_call_id right after the call"),
    Code("duplicate_tool_call_id", _E, "two tool calls share an id", "give every tool call a unique id"),
    Code("duplicate_example_id", _E, "two examples share an id", "give every example a unique id"),
    Code("layout_mismatch", _E, "record lacks the fields of the forced --format", "drop --format or fix the record"),
    # Filters applied by `prepare`.
    Code("low_quality", _E, "quality score below --min-quality", "improve the example or lower --min-quality"),
    # Warnings: trainable, but probably not what you want.
    Code("no_system_message", _W, "no system message", "add a system message that states the assistant's job", 5),
    Code("tools_not_declared", _W, "tool calls but no tool declarations: the model never sees the schemas",
         "add a tools list to the example, or pass --tools TOOLS.json", 15),
    Code("too_short", _W, "example is very short", "check that the example is complete", 30),
    Code("too_long", _W, "example is longer than --max-tokens and will be rejected at training time",
         "shorten it or raise the training max length", 20),
    Code("ends_without_answer", _W, "conversation ends on a user or tool turn, which is never trained",
         "end with the assistant's reply", 25),
    Code("tool_error_claimed_success", _W, "a tool returned an error but the reply reads as success",
         "make the reply acknowledge the error and offer alternatives", 40),
    Code("truncated_reply", _W, "assistant reply looks cut off (unclosed code block or dangling end)",
         "complete the reply", 30),
    Code("repetitive_reply", _W, "assistant reply repeats itself", "remove the repetition", 30),
    Code("tool_name_mismatch", _W, "tool result names a different tool than its call", "use the call's name", 10),
    Code("parallel_calls_disabled", _W, "several calls in one turn but parallel_tool_calls is false",
         "split the calls into turns or set parallel_tool_calls true", 10),
    Code("duplicate_example", _W, "example duplicates an earlier one", "remove the duplicate"),
    Code("near_duplicate_example", _W, "example nearly duplicates an earlier one", "remove or vary it"),
    Code("identical_assistant_replies", _W, "most examples end with the same assistant reply",
         "vary the replies: the model will learn to say only this"),
)}


def severity(code: str) -> Severity:
    return CODES[code].severity


@dataclass(slots=True)
class Finding:
    """One problem found in the input: where, which code, and what exactly is wrong."""

    code: str
    message: str
    file: str = ""
    line: int | None = None  # 1-based line where the record starts (row number for Parquet)

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    @property
    def fix(self) -> str:
        return CODES[self.code].fix

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "file": self.file, "line": self.line,
                "message": self.message, "fix": self.fix}


class InputError(Exception):
    """Inputs that cannot be read at all (exit 2); carries every such finding, not just the first."""

    def __init__(self, findings: list[Finding]):
        super().__init__("; ".join(f"{f.where()}: {f.message}" for f in findings))
        self.findings = findings


def markdown_table() -> str:
    """The catalogue as a Markdown table; docs/data.md embeds it and a test keeps the two equal."""
    rows = ["| code | tier | meaning | fix | quality penalty |", "|---|---|---|---|---|"]
    for c in CODES.values():
        tier = c.severity + (" (input unreadable: exit 2)" if c.fatal else "")
        rows.append(f"| `{c.code}` | {tier} | {c.title} | {c.fix} | {c.penalty or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
