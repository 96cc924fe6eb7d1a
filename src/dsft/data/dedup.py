"""Duplicate detection: exact on a normalised form by default, near-duplicates on request.

The normal form is what the model is trained on, minus noise: roles, text without ASCII
whitespace and with ASCII letters lower-cased, tool calls with sorted-key arguments (ids
ignored), and the declared tool names. Metadata (ids, sources) is ignored, so the same example
from two files is caught. It is built as bytes with C-speed `translate`/`lower` because it runs
on every row; only a 16-byte digest per kept row is held in memory.
"""

from __future__ import annotations

import hashlib

import orjson

from dsft.data.conversation import Conversation, as_dict
from dsft.data.survey import Survey, survey

_ASCII_SPACE = b" \t\n\r\x0b\x0c"
_ASCII_LOWER = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))  # what bytes.lower() does, in the same pass


def normal_form(conv: Conversation | dict | Survey, tool_names: str | None = None) -> bytes:
    """`tool_names`: the sorted, comma-joined declared names (computed here from `conv` if not given)."""
    if type(conv) is Survey:
        facts = conv
    else:
        conv = as_dict(conv)
        facts = survey(conv)
        if tool_names is None:
            tool_names = ",".join(sorted(t["name"] for t in conv.get("tools") or ()))
    text = "\0".join(facts.text)
    if tool_names:
        text += "\0" + tool_names
    return text.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, _ASCII_SPACE)


def plain_text(conv: Conversation | dict) -> str:
    """Words of the example, for near-duplicate shingles."""
    msgs = as_dict(conv)["messages"]
    parts = [m["content"] for m in msgs if m.get("content")]
    parts += [orjson.dumps(c.get("arguments", {})).decode() for m in msgs for c in m.get("tool_calls") or ()]
    return " ".join(parts).casefold()


def digest(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()


class ExactDeduper:
    """Remembers the first row of each normal form; answers with that row's index."""

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def seen(self, key: bytes, index: int) -> int | None:
        first = self._first.setdefault(key, index)
        return None if first == index else first


class NearDeduper:
    """MinHash + LSH (datasketch) over word 3-grams; `threshold` is the Jaccard similarity."""

    def __init__(self, threshold: float, num_perm: int = 64, seed: int = 1):
        from datasketch import MinHash, MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError("near-duplicate threshold must be in (0, 1]")
        self._minhash, self._num_perm, self._seed = MinHash, num_perm, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def seen(self, text: str, index: int) -> int | None:
        words = text.split()
        grams = {" ".join(words[i:i + 3]).encode() for i in range(max(1, len(words) - 2))}
        mh = self._minhash(num_perm=self._num_perm, seed=self._seed)
        mh.update_batch(list(grams))
        hits = self._lsh.query(mh)
        if hits:
            return min(hits)
        self._lsh.insert(index, mh)
        return None
