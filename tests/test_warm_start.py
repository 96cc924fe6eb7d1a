"""Issue 11: the embedded default starts pretrained on generic tool use -- a corpus about nothing in
particular (model/warm_corpus.py), weights that fit one layout exactly (model/warm_start.py)."""

from __future__ import annotations

import json
import re

import pytest

from dsft.model import warm_start
from dsft.model.warm_corpus import conversations, vocabulary_words


@pytest.fixture(scope="module")
def words(tiny_tokenizer):
    return vocabulary_words(tiny_tokenizer)


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def test_the_corpus_is_a_function_of_its_seed(words):
    assert list(conversations(words, 30, seed=3)) == list(conversations(words, 30, seed=3))
    assert list(conversations(words, 30, seed=3)) != list(conversations(words, 30, seed=4))


def test_the_corpus_speaks_only_the_vocabularys_words_and_mixes_single_parallel_and_no_call(words):
    known = set(words)
    kinds = {"none": 0, "single": 0, "parallel": 0}
    for conv in conversations(words, 400, seed=0):
        calls = next((m.get("tool_calls") for m in conv["messages"] if m.get("tool_calls")), None) or []
        kinds["none" if not calls else "single" if len(calls) == 1 else "parallel"] += 1
        user = next(m["content"] for m in conv["messages"] if m["role"] == "user")
        # every lower-case word of the request is a vocabulary word (values: names, emails, codes aside)
        for word in re.findall(r"(?<![\w@.])[a-z]{3,10}(?![\w@.])", user):
            assert word in known or word in ("yes", "off", "true", "false", "with", "without", "and", "then",
                                             "on", "no"), word
        for call in calls:
            args = json.loads(call["function"]["arguments"])
            for leaf in _leaves(args):
                if isinstance(leaf, bool):
                    continue
                assert (json.dumps(leaf) if isinstance(leaf, float) else str(leaf)) in user, (leaf, user)
    assert kinds["none"] / 400 == pytest.approx(0.10, abs=0.04)
    assert kinds["parallel"] / 400 == pytest.approx(0.15, abs=0.05)


def test_every_corpus_row_passes_dsfts_own_checks(words, tmp_path):
    from dsft.train.trainer import load_conversations

    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in conversations(words, 120, seed=7)))
    convs, counts = load_conversations([str(path)])
    assert len(convs) == 120, counts


def test_the_shipped_weights_fit_the_default_build_only(tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    from dsft.model.tiny import TinySpec, build, build_tokenizer

    info = warm_start.provenance()
    assert info is not None and warm_start.WEIGHTS.is_file(), "the pretrained weights are not in the package"
    assert info["vocabulary_sha256"] == warm_start.vocabulary_hash(tiny_tokenizer)
    other = build_tokenizer(TinySpec(family="deepseek_v32"))
    assert warm_start.vocabulary_hash(other) != info["vocabulary_sha256"]
    out = build(tmp_path / "v32", TinySpec(family="deepseek_v32"))
    assert json.loads((out / "config.json").read_text())["dsft_tiny"]["pretrained"] is False
    assert AutoTokenizer.from_pretrained(out) is not None


def test_model_tiny_builds_pretrained_by_default_and_not_when_asked(tiny_model, tmp_path):
    from dsft.model.tiny import TinySpec, build

    assert json.loads((tiny_model / "config.json").read_text())["dsft_tiny"]["pretrained"] is True
    plain = build(tmp_path / "plain", TinySpec(pretrained=False))
    assert json.loads((plain / "config.json").read_text())["dsft_tiny"] == {
        "arch": "deepseek_v3", "seed": 0, "family": "deepseek_v3", "copy_circuit": True, "pretrained": False,
        "tokenizer": "deepseek-merges"}
