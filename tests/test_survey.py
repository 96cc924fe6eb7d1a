"""The survey's type check may only accept what the pydantic model accepts unchanged, and its
facts must equal what the rules computed from a `Conversation` would be."""

from __future__ import annotations

import copy
import itertools
import random

import pytest
from pydantic import ValidationError

from dsft.data.conversation import Conversation
from dsft.data.dedup import normal_form
from dsft.data.quality import guide_score
from dsft.data.survey import survey
from dsft.data.tokens import approx_tokens

CALL = {"id": "c1", "name": "f", "arguments": {"b": 1, "a": [1, 2]}}
FIELD_VALUES = {
    "role": ["system", "user", "assistant", "tool", "developer", None, 3],
    "content": ["hi", "", "héllo 😀", None, 7, ["x"], {"a": 1}],
    "tool_calls": [[CALL], [], None, "x", {"id": "c"}],
    "tool_call_id": ["c1", None, 5],
    "name": ["f", None, ["f"]],
    "weight": [0, 1, None, 2, True, "1", 1.0],
    "reasoning": ["think", None, 1],
    "extra": [None, "x"],
}


def messages(rng: random.Random, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        m = {}
        for key, values in FIELD_VALUES.items():
            if rng.random() < (0.9 if key in ("role", "content") else 0.25):
                value = rng.choice(values)
                if key != "extra" or value is not None:
                    m[key] = copy.deepcopy(value)
        out.append(m)
    return out


def test_survey_accepts_only_what_the_model_accepts_unchanged():
    rng = random.Random(0)
    accepted = refused = 0
    for _ in range(3000):
        conv = {"messages": messages(rng, rng.randint(0, 4)), "metadata": rng.choice([{}, {"id": 1}, [], None])}
        if rng.random() < 0.2:
            conv["parallel_tool_calls"] = rng.choice([True, False, "yes", None])
        if conv["metadata"] is None:
            del conv["metadata"]
        facts = survey(conv)  # may drop None-valued message keys, as exclude_none would
        if facts is None:
            refused += 1
            continue
        accepted += 1
        try:
            model = Conversation.model_validate(conv)
        except ValidationError as e:  # pragma: no cover - the assertion below explains
            pytest.fail(f"survey accepted what pydantic refuses: {conv}\n{e}")
        dumped = model.model_dump(exclude_none=True)
        conv.setdefault("metadata", {})
        if conv.get("parallel_tool_calls") is None:
            conv.pop("parallel_tool_calls", None)
        assert dumped == conv
    assert accepted > 300 and refused > 300  # both sides of the check were exercised


@pytest.mark.parametrize("seed", range(5))
def test_facts_match_the_rules_on_the_model(seed):
    rng = random.Random(seed)
    valid = [m for m in messages(rng, 40) if survey({"messages": [m]}) is not None]
    for msgs in itertools.islice((valid[i:i + 4] for i in range(len(valid))), 20):
        model = Conversation.model_validate({"messages": msgs})
        facts = survey(model.model_dump(exclude_none=True))
        trained = any(m.trained and (m.content or m.tool_calls) for m in model.messages)
        assert facts.trained == trained
        assert facts.has_system == any(m.role == "system" for m in model.messages)
        assert facts.call_names == [c.name for c in model.calls()]
        replies = [m.content for m in model.messages if m.role == "assistant" and m.content]
        assert facts.final_reply == (replies[-1] if replies else None)
        # the public helpers accept a Conversation and agree with the survey
        assert guide_score(model) == guide_score(facts)
        assert approx_tokens(model) == facts.approx_tokens(0)
        assert normal_form(model) == normal_form(facts)
