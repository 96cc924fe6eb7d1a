"""Loading tokenizers and models the safe way: safetensors only, no remote code unless asked."""

from __future__ import annotations

from dsft.errors import UserError


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    from dsft.model.locate import locate

    name = locate(name, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as e:  # transformers raises OSError/ValueError/... for a missing or bad tokenizer
        raise UserError(f"cannot load the tokenizer of {name!r}: {str(e).splitlines()[0]}",
                        "give a model folder (e.g. from `dsft model tiny`) or an id your machine can reach") from None
