"""The tokenizer a GGUF file carries, chosen so llama.cpp gives the ids training saw.

Why: llama.cpp does not read `tokenizer.json`. It splits text with the regexes of the pre-tokenizer
*named* in `tokenizer.ggml.pre`, then applies the merges. dsft used to write "default" (GPT-2's
split, digits in runs), so a chat prompt came out as other ids than in training.

`PRE_TYPES` holds the names llama.cpp knows and the regexes it runs for each (src/llama-vocab.cpp,
`llm_tokenizer_bpe`'s constructor, ggml-org/llama.cpp as stored at a458664f; the name strings from
`llama_vocab::impl::load`), written in the Oniguruma syntax HF tokenizers uses. A tokenizer whose
own pre-tokenizer is one of them gets that name ("exact"). Any other -- the embedded default splits
into letter runs, single digits, whitespace runs and JSON punctuation, which no llama.cpp type does --
gets the candidate that tokenizes a probe corpus most like it ("measured"): each candidate's
regexes run through HF tokenizers over the very vocabulary and merges, so the figure is the
regexes' agreement, not llama.cpp's binary (tests/test_gguf_llama_cpp.py runs that where present).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

# name -> (regexes applied in turn, each splitting the pieces of the one before; ignore_merges)
PRE_TYPES: dict[str, tuple[tuple[str, ...], bool]] = {
    "deepseek-v3": ((r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
                     r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
                     r"""| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""), False),
    "deepseek-coder": ((r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"), False),
    "qwen2": ((_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
              False),
    "llama-bpe": ((_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                   r"|\s+(?!\S)|\s+",), True),
    "smollm": ((r"\p{N}", GPT2), False),
    "gpt-2": ((GPT2,), False),
}


@dataclass
class PreChoice:
    """The name written, how it was found, and (measured) how many probes tokenize identically."""
    name: str
    how: str  # "exact" | "measured"
    same: int = 0
    probes: int = 0
    differing: list[str] = field(default_factory=list)  # a few probe texts that tokenize otherwise

    def summary(self) -> dict:
        out = {"pre": self.name, "how": self.how}
        if self.how == "measured":
            out["identical"] = f"{self.same}/{self.probes}"
        return out


def _normal(pattern: str) -> str:
    """One spelling per regex: control characters as escapes (tokenizer.json holds a raw CR where this
    table writes `\\r`), and no `|\\s+` at the end of an alternation (it changes nothing: what no
    branch matches is a piece of its own anyway)."""
    pattern = pattern.replace("\r", r"\r").replace("\n", r"\n").replace("\t", r"\t")
    return pattern[:-4] if pattern.endswith(r"|\s+") else pattern


def split_patterns(pre: dict | None) -> tuple[str, ...] | None:
    """A tokenizer.json pre-tokenizer as the regexes it splits with, in order; None when it does
    something else (Metaspace, Whitespace, ...) that no llama.cpp BPE type matches by name."""
    if pre is None:
        return ()
    kind = pre.get("type")
    if kind == "Sequence":
        out: list[str] = []
        for part in pre["pretokenizers"]:
            got = split_patterns(part)
            if got is None:
                return None
            out += got
        return tuple(out)
    if kind == "Split" and pre.get("behavior") == "Isolated" and not pre.get("invert") and "Regex" in pre["pattern"]:
        return (_normal(pre["pattern"]["Regex"]),)
    if kind == "Digits":
        return (r"\p{N}",) if pre.get("individual_digits") else (r"\p{N}+",)
    if kind == "ByteLevel":
        return (GPT2,) if pre.get("use_regex", True) else ()
    return None


def pre_tokenizer_json(name: str) -> dict:
    """The HF pre-tokenizer that splits as llama.cpp's `name` does (byte-level, as GGUF's gpt2 model)."""
    regexes, _ = PRE_TYPES[name]
    return {"type": "Sequence", "pretokenizers": [
        *({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False} for r in regexes),
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def with_split(spec: dict, name: str) -> dict:
    """A tokenizer.json (as a dict) given llama.cpp's `name` split: its regexes and whether whole
    pre-tokens found in the vocabulary skip the merges (llama-bpe)."""
    spec["pre_tokenizer"] = pre_tokenizer_json(name)
    spec["model"]["ignore_merges"] = PRE_TYPES[name][1]
    return spec


def simulated(tokenizer, name: str):
    """The tokenizer's vocabulary, merges and special tokens with llama.cpp's `name` split instead of its own."""
    from tokenizers import Tokenizer

    spec = with_split(json.loads(tokenizer.backend_tokenizer.to_str()), name)
    spec["normalizer"] = None  # llama.cpp's gpt2 model normalizes nothing
    return Tokenizer.from_str(json.dumps(spec))


def probe_texts(tokenizer, family, n: int = 300, seed: int = 0) -> list[str]:
    """`n` chat prompts of generic tool-use conversations (model/warm_corpus.py, nobody's domain) as the
    family renders them, plus text with runs of spaces, code, digits, accents and CJK."""
    from dsft.chat.encoder import Options, prompt_text
    from dsft.data.conversation import Conversation
    from dsft.data.layouts import convert
    from dsft.model.warm_corpus import conversations, vocabulary_words

    def strict(code: str, message: str, *args, **kwargs) -> None:
        raise ValueError(f"probe conversation: {code}: {message}")  # our own generator's rows are valid

    words = vocabulary_words(tokenizer)
    if len(words) < 200:
        words = sorted({w for w in "alpha beta gamma delta river stone cloud paper window garden market".split()}
                       | {f"{a}{b}" for a in "bcdfglmnprst" for b in ("ane", "ole", "ite", "ure", "ash", "ing")})
    opts = Options(thinking=family.thinking_default)
    texts = [prompt_text(Conversation.model_validate(convert(c, strict)[1]), tokenizer, family, opts)
             for c in conversations(words, n, seed)]
    rng = random.Random(seed)
    texts += ["def total(xs):\n    return  sum(xs)  # two  spaces\n\n\n", "Hello   world!!  \t ok\n  indented",
              "Prix : 12 345,67 € — déjà vu, naïve café", "日本語のテキストと中文の文", "it's we'll THEY'RE 3.14159",
              "  leading and trailing  ", "".join(rng.choice("ab 1{}\":,\n") for _ in range(200))]
    return texts


def choose(tokenizer, family) -> PreChoice:
    """The llama.cpp pre-tokenizer for this tokenizer: by name where its split is one llama.cpp has, else
    the candidate that tokenizes `probe_texts` most often exactly as the tokenizer itself does."""
    own = split_patterns(json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer"))
    for name, (regexes, _) in PRE_TYPES.items():
        if own is not None and own == tuple(_normal(r) for r in regexes):
            return PreChoice(name, "exact")
    texts = probe_texts(tokenizer, family)
    want = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    best: PreChoice | None = None
    for name in PRE_TYPES:
        sim = simulated(tokenizer, name)
        got = [sim.encode(t, add_special_tokens=False).ids for t in texts]
        differing = [t for t, a, b in zip(texts, got, want) if a != b]
        choice = PreChoice(name, "measured", len(texts) - len(differing), len(texts), differing[:3])
        if best is None or choice.same > best.same:
            best = choice
    return best
