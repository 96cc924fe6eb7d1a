"""Quality scorers (hand-computed cases), the split and deduplication."""

from __future__ import annotations

import random

import pytest

from dsft.data.conversation import Conversation
from dsft.data.dedup import ExactDeduper, NearDeduper, digest, normal_form
from dsft.data.quality import dsft_score, guide_score
from dsft.data.split import StreamingSplit, validation_rows


def conv(*msgs, **kw):
    return Conversation.model_validate({"messages": list(msgs), **kw})


def test_guide_score_hand_computed():
    long = "x" * 150
    # 2+ messages (20) + tool_calls (10) + avg > 100 (20) + system (15) + calls and tool result (25) = 90
    c = conv({"role": "system", "content": long}, {"role": "user", "content": long},
             {"role": "assistant", "tool_calls": [{"id": "a", "name": "f"}]},
             {"role": "tool", "tool_call_id": "a", "content": long}, {"role": "assistant", "content": long})
    assert guide_score(c) == 90  # avg = 600 / 5 = 120
    assert guide_score(conv({"role": "user", "content": "hi"})) == 0
    assert guide_score(conv()) == 0  # JS: NaN comparisons are false
    assert guide_score(conv({"role": "user", "content": "a" * 1001}, {"role": "assistant", "content": "b"})) == 50


def test_guide_score_counts_utf16_units_like_javascript():
    # "😀" is one code point but two UTF-16 units: JS averages (202 + 2) / 2 = 102 > 100, Python len() 51
    c = conv({"role": "user", "content": "😀" * 101}, {"role": "assistant", "content": "😀"})
    assert guide_score(c) == 20 + 20


def test_dsft_score_subtracts_warning_penalties_and_zeroes_errors():
    assert dsft_score([]) == 100
    assert dsft_score(["no_system_message"]) == 95
    assert dsft_score(["tool_error_claimed_success", "truncated_reply", "too_short"]) == 0
    assert dsft_score(["no_system_message", "unknown_role"]) == 0


def _strata(n):
    rng = random.Random(0)
    return [rng.choice(["a", "a", "a", "b", "c"]) for _ in range(n)], [digest(str(i)) for i in range(n)]


def test_split_is_deterministic_stratified_and_exact():
    strata, digests = _strata(1000)
    val = validation_rows(strata, digests, 0.1, seed=1)
    assert len(val) == 100 and val == validation_rows(strata, digests, 0.1, seed=1)
    assert val != validation_rows(strata, digests, 0.1, seed=2)
    for s in "abc":
        share = sum(1 for i in val if strata[i] == s) / strata.count(s)
        assert abs(share - 0.1) < 0.02


def test_split_ignores_input_order():
    strata, digests = _strata(200)
    val = {digests[i] for i in validation_rows(strata, digests, 0.2, seed=0)}
    order = list(range(200))
    random.Random(3).shuffle(order)
    shuffled = validation_rows([strata[i] for i in order], [digests[i] for i in order], 0.2, seed=0)
    assert {digests[order[j]] for j in shuffled} == val


def test_split_never_leaves_validation_empty_from_ten_rows():
    assert len(validation_rows(["a"] * 10, [digest(str(i)) for i in range(10)], 0.01, 0)) == 1
    assert validation_rows(["a"] * 9, [digest(str(i)) for i in range(9)], 0.01, 0) == set()
    assert validation_rows(["a"] * 50, [digest(str(i)) for i in range(50)], 0.0, 0) == set()


def test_normal_form_ignores_case_whitespace_ids_and_key_order():
    a = conv({"role": "user", "content": "Hello   World"},
             {"role": "assistant", "tool_calls": [{"id": "x1", "name": "f", "arguments": {"a": 1, "b": 2}}]},
             metadata={"id": 1})
    b = conv({"role": "user", "content": "hello world\n"},
             {"role": "assistant", "tool_calls": [{"id": "zz", "name": "f", "arguments": {"b": 2, "a": 1}}]},
             metadata={"id": 2})
    assert normal_form(a) == normal_form(b)
    d = ExactDeduper()
    assert d.seen(digest(normal_form(a)), 0) is None and d.seen(digest(normal_form(b)), 1) == 0


def test_near_duplicates():
    base = "the quick brown fox jumps over the lazy dog near the river bank in the early morning light " * 3
    d = NearDeduper(0.7)
    assert d.seen(base, 0) is None
    assert d.seen(base.replace("early", "late"), 1) == 0
    assert d.seen("completely different text about css selectors and grid layouts in browsers", 2) is None


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.1, 0.3])
@pytest.mark.parametrize("sigmas,slack", [(6.0, 4.0), (0.0, 0.0)])
def test_streaming_split_chooses_exactly_what_the_in_memory_split_does(ratio, sigmas, slack):
    rng = random.Random(int(ratio * 100))
    for n in (0, 9, 10, 37, 400, 3000):
        strata = [rng.choice(["common"] * 20 + ["rare", "mid", "mid"]) for _ in range(n)]
        digests = [digest(f"{ratio}-{n}-{i}") for i in range(n)]
        split = StreamingSplit(ratio, seed=5, sigmas=sigmas, slack=slack)
        held = [i for i in range(n) if split.offer(strata[i], digests[i])]
        assert held == split.candidates
        chosen, complete = split.choose()
        assert chosen == validation_rows(strata, digests, ratio, seed=5)
        if complete:
            assert chosen <= set(held), "a complete choice only takes rows that were held aside"
        if sigmas and n >= 400:
            assert complete
        if sigmas and n == 3000:
            assert len(held) < n * (ratio + 0.2), "not much more than the share is held aside"


def test_streaming_split_holds_aside_little_more_than_the_share_of_a_large_dataset():
    split = StreamingSplit(0.1, seed=0)
    n = 50_000
    for i in range(n):
        split.offer("tool:a" if i % 3 else "chat", digest(str(i)))
    chosen, complete = split.choose()
    assert complete and len(chosen) == 5000
    assert len(split.candidates) < 0.14 * n
