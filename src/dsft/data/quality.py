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
    score = 0
    if len(msgs) >= 2:
        score += 20
    has_calls = any(m.tool_calls is not None for m in msgs)
    if has_calls:
        score += 10
    if msgs:
        avg = sum(_js_len(m.content) for m in msgs) / len(msgs)
        if avg > 100:
            score += 20
        if avg > 500:
            score += 10
    if any(m.role == "system" for m in msgs):
        score += 15
    if has_calls and any(m.role == "tool" for m in msgs):
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
