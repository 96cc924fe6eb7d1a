"""Copy augmentation: teach a model to copy argument values instead of memorising them.

A tool-use row whose call arguments stand verbatim in the user's turn ("book 2026-03-14T09:30 with
ana@corp.io" -> `{"start": "2026-03-14T09:30", "attendees": ["ana@corp.io"]}`) can be varied: each
such value is replaced, everywhere in the conversation (the user's words, the arguments, the tool
results, the answer), by a new value of the same shape. Shapes are kept so a variant is as real as
the row it came from:

- JSON numbers keep their type, sign, digit count and decimals (an integer stays an integer);
- ISO dates, times and datetimes stay valid ones in the same format;
- other strings keep their layout: digits become other digits, letter runs become other words (a
  run that is one token of the tokenizer another such word, else a word of the dataset's own
  vocabulary or made-up letters, in the same letter case), everything else is kept, so an email
  stays an email and "ZX-4839" stays two capitals, a dash and four digits;
- enum values, booleans and values the user never wrote are left alone (they are chosen, not copied).

A variant whose arguments no longer satisfy the tool's schema is dropped. Only training rows are
ever augmented: the trainer applies this after the validation split.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

from dsft.data.checks import SchemaCache
from dsft.data.conversation import Conversation

_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:([T ])(\d{2}):(\d{2})(?::(\d{2}))?)?(Z|[+-]\d{2}:\d{2})?$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_PIECES = re.compile(r"[^\W\d_]+|\d|.", re.S)
_WORD = re.compile(r"[^\W\d_]{3,}")
_LOWER, _UPPER = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def vocabulary(convs: Iterable[Conversation]) -> list[str]:
    """Lower-case words of three letters or more from the users' turns, sorted (deterministic)."""
    words = {w.lower() for c in convs for m in c.messages if m.role == "user" and m.content
             for w in _WORD.findall(m.content)}
    return sorted(words)


def _case_like(word: str, model: str) -> str:
    if model.isupper() and len(model) > 1:
        return word.upper()
    if model[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def token_words(tokenizer) -> list[str]:
    """ASCII words of 3-12 letters that are one token of `tokenizer` (with or without the leading
    space a byte-level BPE glues on), in their own case, sorted."""
    words = set()
    for token in tokenizer.get_vocab():
        text = token[1:] if token[:1] in ("Ġ", "▁") else token
        if 3 <= len(text) <= 12 and text.isascii() and text.isalpha():
            words.add(text)
    return sorted(words)


def _case(word: str) -> str:
    return "upper" if word.isupper() else "title" if word[:1].isupper() and word[1:].islower() else \
        "lower" if word.islower() else "mixed"


class TokenWords:
    """The tokenizer's one-token words by case pattern, for `_letters`."""

    def __init__(self, words: Iterable[str] = ()):
        self.members = set(words)
        self.by_case: dict[str, list[str]] = {}
        for w in sorted(self.members):
            self.by_case.setdefault(_case(w), []).append(w)

    def near(self, run: str) -> list[str]:
        return [w for w in self.by_case.get(_case(run), ()) if abs(len(w) - len(run)) <= 3 and w != run]


_NO_TOKENS = TokenWords()


def _letters(run: str, rng: random.Random, words: list[str], tokens: TokenWords = _NO_TOKENS) -> str:
    """Another run of letters. A run that is one token of the tokenizer becomes another one-token
    word of its case (half the time): a held-out value is often such a token ("Egypt") that
    the training rows never hold, and measured, a tiny model that saw the four one-token
    countries of its training rows wrote another country for it in 11 of 11 rows (5 of 10 with
    this rule) rather than copy it. Otherwise a dataset word of about the same length (half the
    time) or made-up letters of the same length and case pattern."""
    if run in tokens.members and rng.random() < 0.5:
        pool = tokens.near(run)
        if pool:
            return rng.choice(pool)
    close = [w for w in words if abs(len(w) - len(run)) <= 2] if len(run) >= 3 and words else []
    if close and rng.random() < 0.5:
        return _case_like(rng.choice(close), run)
    return "".join(rng.choice(_UPPER if ch.isupper() else _LOWER) if ch.isascii() else ch for ch in run)


def _digits(text: str, rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) if ch.isdigit() else ch for ch in text)


def resample_string(value: str, rng: random.Random, words: list[str], tokens: TokenWords = _NO_TOKENS) -> str:
    iso = _ISO.match(value)
    if iso:
        year, month, day = rng.randrange(2000, 2040), rng.randrange(1, 13), rng.randrange(1, 29)
        out = f"{year:04d}-{month:02d}-{day:02d}"
        if iso.group(4):
            out += f"{iso.group(4)}{rng.randrange(24):02d}:{rng.randrange(60):02d}"
            if iso.group(7):
                out += f":{rng.randrange(60):02d}"
        if iso.group(8):
            out += iso.group(8)
        return out
    clock = _CLOCK.match(value)
    if clock:
        hour = rng.randrange(24) if len(clock.group(1)) == 2 else rng.randrange(1, 10)
        out = f"{hour:0{len(clock.group(1))}d}:{rng.randrange(60):02d}"
        return out + (f":{rng.randrange(60):02d}" if clock.group(3) else "")
    out = []
    for piece in _PIECES.findall(value):
        if piece.isdigit():
            out.append(_digits(piece, rng))
        elif piece.isalpha():
            out.append(_letters(piece, rng, words, tokens))
        else:
            out.append(piece)
    return "".join(out)


def resample_number(value: int | float, rng: random.Random) -> int | float:
    text = repr(value) if isinstance(value, float) else str(value)
    sign, body = ("-", text[1:]) if text.startswith("-") else ("", text)
    if "e" in body.lower():
        return value
    whole, _, frac = body.partition(".")
    new_whole = str(rng.randrange(10 ** (len(whole) - 1) if len(whole) > 1 else 0, 10 ** len(whole)))
    new = sign + new_whole + ("." + _digits(frac, rng) if frac else "")
    return float(new) if isinstance(value, float) else int(new)


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _leaves(value: Any, schema: dict | None) -> Iterable[tuple[Any, dict]]:
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            yield from _leaves(v, props.get(k))
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, schema.get("items"))
    else:
        yield value, schema


def copied_values(conv: Conversation) -> list[str | int | float]:
    """Argument values (strings of 2+ characters, numbers) that the user wrote verbatim, longest first."""
    said = "\n".join(m.content for m in conv.messages if m.role == "user" and m.content)
    schemas = {t.name: t.parameters for t in conv.tools or ()}
    found: dict[str, str | int | float] = {}
    for m in conv.messages:
        for call in m.tool_calls or ():
            for leaf, schema in _leaves(call.arguments, schemas.get(call.name)):
                if "enum" in schema or "const" in schema or isinstance(leaf, bool) or leaf is None:
                    continue
                if isinstance(leaf, str) and len(leaf) >= 2 and leaf in said:
                    found[leaf] = leaf
                elif isinstance(leaf, int | float) and re.search(
                        rf"(?<![\d.]){re.escape(_number_text(leaf))}(?!\d|\.\d)", said):
                    found[_number_text(leaf)] = leaf
    return sorted(found.values(), key=lambda v: -len(_number_text(v) if not isinstance(v, str) else v))


def _replace_text(text: str, mapping: dict[str, str]) -> str:
    if not mapping or not text:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def _replace_value(value: Any, numbers: dict[str, int | float], mapping: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _replace_value(v, numbers, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_value(v, numbers, mapping) for v in value]
    if isinstance(value, str):
        return mapping.get(value, _replace_text(value, mapping))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return numbers.get(_number_text(value), value)
    return value


def variant(conv: Conversation, rng: random.Random, words: list[str],
            tokens: TokenWords = _NO_TOKENS) -> Conversation | None:
    """One copy-augmented variant of `conv`, or None when it has nothing copied (or breaks a schema)."""
    values = copied_values(conv)
    if not values:
        return None
    texts: dict[str, str] = {}
    numbers: dict[str, int | float] = {}
    for v in values:
        for _ in range(5):  # a new value that is not an old one (nor one already chosen)
            new = resample_number(v, rng) if not isinstance(v, str) else resample_string(v, rng, words, tokens)
            key, new_text = (v, new) if isinstance(v, str) else (_number_text(v), _number_text(new))
            if new_text != key and new_text not in texts and new_text not in texts.values():
                break
        else:
            return None
        texts[key] = new_text
        if not isinstance(v, str):
            numbers[key] = new
    messages = []
    for m in conv.messages:
        update: dict[str, Any] = {"content": _replace_text(m.content, texts) if m.content else m.content}
        if m.tool_calls:
            update["tool_calls"] = [c.model_copy(update={"arguments": _replace_value(c.arguments, numbers, texts)})
                                    for c in m.tool_calls]
        messages.append(m.model_copy(update=update))
    out = conv.model_copy(update={"messages": messages,
                                  "metadata": {**conv.metadata, "copy_augmented": True}})
    return out if _valid(out) else None


_SCHEMAS = SchemaCache()


def _valid(conv: Conversation) -> bool:
    schemas = {t.name: t.parameters for t in conv.tools or ()}
    return all(_SCHEMAS.accepts(schemas[call.name], call.arguments)
               for m in conv.messages for call in m.tool_calls or () if call.name in schemas)


def augment(convs: list[Conversation], per_row: float, seed: int, tokens: Iterable[str] = ()) -> list[Conversation]:
    """`per_row` variants of each row that has copied values (a fraction: that share of them, one
    each); a pure function of the rows, the seed and `tokens` (`token_words` of the tokenizer)."""
    if per_row <= 0:
        return []
    rng = random.Random(seed * 7_919 + 17)
    words, pools = vocabulary(convs), TokenWords(tokens)
    out = []
    for conv in convs:
        whole, part = divmod(per_row, 1)
        for _ in range(int(whole) + (rng.random() < part)):
            v = variant(conv, rng, words, pools)
            if v is not None:
                out.append(v)
    return out
