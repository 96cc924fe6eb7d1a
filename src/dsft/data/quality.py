"""Quality scores, 0-100.

`guide` reproduces the user's guide (section 4.5) exactly, JavaScript semantics included:
string lengths in UTF-16 code units, `avgLength` over all messages (null content counts 0),
comparisons with NaN false for an empty conversation. It rewards length, so it is kept for
fidelity, not for filtering.

`dsft` starts at 100 and subtracts each warning's penalty (see `codes.CODES`): it scores what
the validator finds wrong, so a long but broken example scores low. Rows with errors score 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from dsft.data.codes import CODES
from dsft.data.conversation import Conversation

SCORERS = ("dsft", "guide")


def _js_len(s: str | None) -> int:
    if not s:
        return 0
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def guide_score(conv: Conversation) -> int:
    msgs = conv.messages
    has_calls = has_system = has_tool = False
    total = 0
    for m in msgs:  # one pass: this runs on every row of every dataset
        total += _js_len(m.content)
        has_calls = has_calls or m.tool_calls is not None
        has_system = has_system or m.role == "system"
        has_tool = has_tool or m.role == "tool"
    score = 20 if len(msgs) >= 2 else 0
    if has_calls:
        score += 10
    if msgs:
        avg = total / len(msgs)
        score += (20 if avg > 100 else 0) + (10 if avg > 500 else 0)
    if has_system:
        score += 15
    if has_calls and has_tool:
        score += 25
    return score


def dsft_score(codes: Iterable[str]) -> int:
    penalty = 0
    for code in codes:
        info = CODES[code]
        if info.severity == "error":
            return 0
        penalty += info.penalty
    return max(0, 100 - penalty)
