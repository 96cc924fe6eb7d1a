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
from dsft.data.conversation import Conversation, as_dict
from dsft.data.survey import Survey, survey

SCORERS = ("dsft", "guide")


def guide_score(conv: Conversation | dict | Survey) -> int:
    facts = conv if type(conv) is Survey else survey(as_dict(conv))
    score = 20 if facts.messages >= 2 else 0
    if facts.has_calls:
        score += 10
    if facts.messages:
        avg = facts.utf16 / facts.messages
        score += (20 if avg > 100 else 0) + (10 if avg > 500 else 0)
    if facts.has_system:
        score += 15
    if facts.has_calls and facts.has_tool:
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
