"""Scoring predictions that already exist (from any system) against reference examples.

Predictions are JSON Lines, matched to the references by `id` when every prediction has one,
otherwise by order. Each line is one of: an OpenAI assistant message (`content`, `tool_calls`
with JSON-string arguments), a chat completion (`choices[0].message`), `{"message": {...}}`, or
`{"text": "..."}` holding raw generated text (parsed by dsft's DeepSeek parser).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

from dsft.chat.parse import parse_assistant
from dsft.data.conversation import ToolCall
from dsft.data.layouts import parse_arguments
from dsft.errors import UserError
from dsft.eval.tooluse import Scores, cases


class Prediction(NamedTuple):
    calls: list[ToolCall]
    parsed: bool
    content: str | None
    names: list[str]  # the tools the reply names, calls whose arguments did not parse included


def prediction_calls(row: dict[str, Any]) -> Prediction:
    """(calls, parsed, content, names) from one prediction line."""
    if "choices" in row:
        row = (row["choices"] or [{}])[0].get("message", {})
    row = row.get("message", row)
    if "text" in row and "tool_calls" not in row:
        parsed = parse_assistant(row["text"] or "")
        return Prediction(parsed.tool_calls, parsed.ok, parsed.content, parsed.names)
    calls, ok, names = [], True, []
    for k, c in enumerate(row.get("tool_calls") or ()):
        fn = c.get("function", c) if isinstance(c, dict) else {}
        if isinstance(fn.get("name"), str):
            names.append(fn["name"])
        problems: list[str] = []
        args = parse_arguments(fn.get("arguments"), "arguments", lambda code, msg, problems=problems: problems.append(msg))
        if problems or not isinstance(fn.get("name"), str):
            ok = False
            continue
        calls.append(ToolCall(id=str(c.get("id") or k), name=fn["name"], arguments=args))
    content = row.get("content")
    if not calls and isinstance(content, str) and _holds_a_call(content):
        # A server that could not parse the model's call returns its text as content (dsft serve
        # does): a broken call, not a text reply, as in-process evaluation scores it.
        ok, names = False, _names_in(content)
    return Prediction(calls, ok, content if isinstance(content, str) else None, names)


def _names_in(content: str) -> list[str]:
    """The tools a broken call in returned text names, read with the first family whose markup it holds."""
    from dsft.chat.families import FAMILIES

    for family in FAMILIES.values():
        if family.tools and (names := family.parse_reply(content, "call_").names):
            return names
    return []


def _holds_a_call(content: str) -> bool:
    """A family's call opener in the text: a marker (`<｜tool▁calls▁begin｜>`, `<tool_call>`, DSML)
    anywhere, or a bare JSON opener (Llama 3's `{"name": "`) at the start only -- elsewhere that is
    ordinary text, such as a JSON answer."""
    tags, json_openers = _call_markers()
    stripped = content.lstrip()
    return any(m in content for m in tags) or any(stripped.startswith(m) for m in json_openers)


@functools.cache
def _call_markers() -> tuple[frozenset[str], frozenset[str]]:
    from dsft.chat.families import FAMILIES

    openers = {f.calls_open for f in FAMILIES.values()}
    json_openers = frozenset(o for o in openers if o.startswith("{"))
    return frozenset(openers - json_openers), json_openers


def score_file(predictions: Path, references: list[str]) -> dict[str, Any]:
    from dsft.train.trainer import load_conversations

    try:
        rows = [json.loads(line) for line in Path(predictions).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise UserError(f"cannot read predictions {predictions}: {e.strerror}", "check the path") from None
    except json.JSONDecodeError as e:
        raise UserError(f"predictions {predictions} line {e.lineno}: not JSON ({e.msg})", "one JSON object per line") from None
    refs = cases(load_conversations(references)[0])
    if rows and all(isinstance(r, dict) and "id" in r for r in rows):
        by_id = {str(r["id"]): r for r in rows}
        ids = [str(c.prompt.metadata.get("id")) for c in refs]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UserError(f"{len(missing)} references have no prediction with their id (first: {missing[0]})",
                            "give one prediction per reference example")
        rows = [by_id[i] for i in ids]
    elif len(rows) != len(refs):
        raise UserError(f"{len(rows)} predictions for {len(refs)} reference examples",
                        "give one prediction per reference, in order, or an `id` on each")
    scores = Scores()
    for row, case in zip(rows, refs):
        calls, ok, content, names = prediction_calls(row)
        raw = row.get("text") if isinstance(row.get("text"), str) else json.dumps(row, sort_keys=True)
        scores.add(case, calls, ok, content, raw, names=names)
    return scores.summary()
