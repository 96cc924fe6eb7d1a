"""Tool-use conversations about nothing in particular: the corpus the embedded default is pretrained on.

Why: a from-scratch model given 10 minutes on 2 CPU cores spends them learning what every tool-use
task shares -- the chat format, JSON that follows a schema, copying a value from the request into
the right argument, stopping after one call or going on to a second, answering without a tool -- and
has little time left for the user's own task. A real DeepSeek model arrives knowing all that from
pretraining; the embedded default learns it here, once, before it is shipped (model/warm_pretrain.py).

Nothing here is about any domain: every tool, argument, description, request and answer is made of
words drawn at random from the tokenizer's own vocabulary (cut from DeepSeek's merges), and values
are drawn by shape -- words, names, emails, ISO dates and datetimes, clock times, codes, integers,
decimals, enums, booleans, arrays and nested objects -- so what is learnt is how to copy a shape,
not which values or phrasings occur. Requests mention a tool by some of its words, state each
argument next to some of its key's words or by its value alone, in random order, with random
filler around. 75 % one call, 15 % two calls in one turn, 10 % requests that need no tool; the tool
results and a final answer that quotes them follow. Pure stdlib `random`: the corpus is a function
of the seed and the word list.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

TLDS = ("com", "org", "net", "io", "dev", "co", "app", "info", "eu", "us")
KINDS = ("words", "words", "name", "email", "date", "datetime", "time", "code", "integer", "integer", "number",
         "enum", "enum", "boolean", "array", "array", "object")
SCALARS = ("words", "name", "email", "date", "datetime", "time", "code", "integer", "number", "enum")


def vocabulary_words(tokenizer) -> list[str]:
    """Whole lower-case ASCII words of 3 to 10 letters in the tokenizer's vocabulary, sorted: every one
    is a single token, and sampling them uniformly trains each such embedding as "some word"."""
    words = set()
    for token in tokenizer.get_vocab():
        text = tokenizer.convert_tokens_to_string([token])
        if 3 <= len(text) <= 10 and text.isascii() and text.isalpha() and text.islower():
            words.add(text)
    return sorted(words)


class Writer:
    """Draws one conversation at a time from `rng`; `words` is the vocabulary to speak in."""

    def __init__(self, words: list[str], rng: random.Random):
        if len(words) < 200:
            raise ValueError(f"{len(words)} words are too few to draw tools and requests from")
        self.words, self.rng = words, rng

    # ------------------------------------------------------------------ small draws
    def word(self) -> str:
        return self.rng.choice(self.words)

    def phrase(self, lo: int, hi: int) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(lo, hi)))

    def cap(self, text: str) -> str:
        return text[:1].upper() + text[1:]

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    # ------------------------------------------------------------------ schemas and values
    def param(self, depth: int = 0) -> dict:
        """One argument's schema, with the hidden `kind` the value is drawn by."""
        kind = self.rng.choice(KINDS if depth == 0 else SCALARS)
        schema: dict[str, Any]
        if kind in ("words", "name"):
            schema = {"type": "string"}
        elif kind == "email":
            schema = {"type": "string", "format": "email"}
        elif kind == "date":
            schema = {"type": "string", "format": "date"}
        elif kind == "datetime":
            schema = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$", "description": "YYYY-MM-DDTHH:MM"}
        elif kind == "time":
            schema = {"type": "string", "pattern": r"^\d{2}:\d{2}$", "description": "HH:MM"}
        elif kind == "code":
            layout = "".join(self.rng.choice("@#") for _ in range(self.rng.randint(3, 8)))
            cut = self.rng.randrange(1, len(layout))
            layout = layout[:cut] + self.rng.choice(["", "-", "-", ".", "/"]) + layout[cut:]
            schema = {"type": "string", "x-layout": layout}
        elif kind == "integer":
            schema = {"type": "integer", "x-digits": self.rng.choice([1, 2, 2, 3, 4, 5])}
        elif kind == "number":
            schema = {"type": "number", "x-digits": self.rng.choice([1, 2, 3]), "x-decimals": self.rng.choice([1, 2])}
        elif kind == "enum":
            schema = {"type": "string", "enum": sorted({self.word() for _ in range(self.rng.randint(2, 5))})}
        elif kind == "boolean":
            schema = {"type": "boolean"}
        elif kind == "array":
            item = self.param(depth + 1)
            while item["x-kind"] in ("enum", "time"):
                item = self.param(depth + 1)
            schema = {"type": "array", "items": item, "minItems": 1}
        else:  # object
            props = {self.key(): self.param(depth + 1) for _ in range(self.rng.randint(2, 4))}
            schema = {"type": "object", "properties": props, "required": list(props)}
        if self.rng.random() < 0.3 and kind not in ("datetime", "time"):
            schema["description"] = self.phrase(2, 6)
        schema["x-kind"] = kind
        return schema

    def key(self) -> str:
        return "_".join(self.word() for _ in range(self.rng.choice([1, 1, 2, 2, 3])))

    def value(self, schema: dict) -> Any:
        kind, r = schema["x-kind"], self.rng
        if kind == "words":
            text = self.phrase(1, 5)
            return self.cap(text) if r.random() < 0.4 else text
        if kind == "name":
            return " ".join(self.cap(self.word()) for _ in range(r.choice([1, 2, 2, 3])))
        if kind == "email":
            local = r.choice([self.word(), f"{self.word()}.{self.word()}", f"{self.word()}{self.digits(r.randint(1, 3))}",
                              f"{self.word()[0]}{self.word()}"])
            return f"{local}@{self.word()}.{r.choice(TLDS)}"
        if kind == "date":
            return f"{r.randint(1950, 2040)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if kind == "datetime":
            return f"{r.randint(1990, 2040)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:" \
                   f"{r.choice(['00', '15', '30', '45', f'{r.randint(0, 59):02d}'])}"
        if kind == "time":
            return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
        if kind == "code":
            return "".join(r.choice(string.digits) if c == "#" else r.choice(string.ascii_uppercase) if c == "@" else c
                           for c in schema["x-layout"])
        if kind == "integer":
            n = schema["x-digits"]
            return r.randint(10 ** (n - 1) if n > 1 else 1, 10 ** n - 1)
        if kind == "number":
            n, d = schema["x-digits"], schema["x-decimals"]
            value = round(r.uniform(0.1 if n == 1 else 10 ** (n - 1), 10 ** n - 1), d)
            return value if value != int(value) else value + 0.5
        if kind == "enum":
            return r.choice(schema["enum"])
        if kind == "boolean":
            return r.random() < 0.5
        if kind == "array":
            return list(dict.fromkeys(self.value(schema["items"]) for _ in range(r.choice([1, 1, 2, 2, 3, 4]))))
        return {k: self.value(s) for k, s in schema["properties"].items()}

    def say(self, value: Any, kind: str, key: str) -> str:
        """How a user writes `value` in a request."""
        r = self.rng
        if kind == "boolean":
            on = r.choice([("yes", "no"), ("on", "off"), ("true", "false"), ("with", "without")])
            return f"{on[0] if value else on[1]} {key.replace('_', ' ')}" if on[0] == "with" else \
                f"{key.replace('_', ' ')} {on[0] if value else on[1]}"
        if isinstance(value, list):
            items = [self.say(v, "scalar", key) for v in value]
            if len(items) == 1:
                return items[0]
            sep = r.choice([", ", ", ", " and ", "; "])
            return sep.join(items[:-1]) + r.choice([" and ", ", ", sep]) + items[-1]
        if isinstance(value, dict):
            parts = []
            for k, v in value.items():
                text = self.say(v, "scalar", k)
                parts.append(f"{k.replace('_', ' ')} {text}" if r.random() < 0.4 else text)
            return ", ".join(parts)
        text = json.dumps(value) if isinstance(value, float) else str(value)
        if kind == "words" and r.random() < 0.7:  # else the key's words and a comma bound it (`request`)
            return '"' + text + '"'
        return text

    def tool(self) -> dict:
        name_words = [self.word() for _ in range(self.rng.choice([1, 2, 2, 3]))]
        props = {}
        while len(props) < self.rng.randint(1, 5):
            props[self.key()] = self.param()
        required = [k for k in props if self.rng.random() < 0.7] or [next(iter(props))]
        description = " ".join(self.rng.sample(name_words + [self.word() for _ in range(self.rng.randint(2, 6))],
                                               k=len(name_words) + self.rng.randint(1, 2)))
        return {"name": "_".join(name_words), "description": self.cap(description), "words": name_words,
                "props": props, "required": required}

    # ------------------------------------------------------------------ turns
    def request(self, tool: dict) -> tuple[str, dict]:
        """A request for one call of `tool` and the arguments it asks for."""
        r = self.rng
        stated = [k for k in tool["props"] if k in tool["required"] or r.random() < 0.5]
        args = {k: self.value(tool["props"][k]) for k in stated}
        pieces = []
        for k in r.sample(stated, len(stated)):
            kind = tool["props"][k]["x-kind"]
            text = self.say(args[k], kind, k)
            style = r.random()
            if kind == "words" and not text.startswith('"'):
                pieces.append(f"{k.replace('_', ' ')} {text},")
            elif kind == "boolean" or style < 0.45:
                pieces.append(text if kind == "boolean" else f"{k.replace('_', ' ')} {text}")
            elif style < 0.7:
                pieces.append(f"{self.word()} {text}")
            else:
                pieces.append(text)
        lead_words = r.sample(tool["words"], k=r.randint(1, len(tool["words"])))
        lead = " ".join(lead_words) if r.random() < 0.8 else self.word() + " " + " ".join(lead_words)
        if r.random() < 0.5:
            lead = self.phrase(1, 3) + " " + lead
        glue = r.choice([", ", " ", "; ", " with ", ", ", " "])
        body = glue.join(pieces)
        if r.random() < 0.75 or not body:
            text = self.cap(f"{lead} {body}")
        else:  # the request opens with a value, which keeps its case
            text = f"{body} {lead}"
        if r.random() < 0.3:
            text += " " + self.phrase(1, 4)
        text = text.strip().rstrip(",")
        return text + r.choice([".", ".", "?", "!", ""]), args

    def result(self) -> dict:
        out = {}
        for _ in range(self.rng.randint(1, 3)):
            schema = self.param(depth=1)
            out[self.key()] = self.value(schema)
        return out

    def conversation(self) -> dict:
        r = self.rng
        tools = [self.tool() for _ in range(r.randint(2, 6))]
        unique: dict[str, dict] = {}
        for t in tools:  # a name drawn twice keeps its first tool
            unique.setdefault(t["name"], t)
        tools = list(unique.values())
        messages: list[dict] = []
        if r.random() < 0.8:
            messages.append({"role": "system", "content": self.cap(self.phrase(4, 14)) + "."})
        roll = r.random()
        declarations = [self.declaration(t) for t in tools]
        if roll < 0.1:  # no tool fits: a word no tool holds, and a plain answer
            used = {w for t in tools for w in t["words"]}
            words = [w for w in (self.word() for _ in range(r.randint(3, 12))) if w not in used]
            messages.append({"role": "user", "content": self.cap(" ".join(words)) + r.choice([".", "?", "!"])})
            messages.append({"role": "assistant", "content": self.cap(self.phrase(3, 14)) + "."})
            return {"messages": messages, "tools": declarations}
        chosen = [r.choice(tools)] if roll < 0.85 else [r.choice(tools), r.choice(tools)]
        asks = [self.request(t) for t in chosen]
        if len(asks) == 1:
            text = asks[0][0]
        else:
            joiner = r.choice([" ", " " + self.cap(self.word()) + ", ", " " + self.cap(self.phrase(1, 3)) + ": ",
                               " And ", " Then ", ". "])
            text = asks[0][0] + joiner + asks[1][0]
        messages.append({"role": "user", "content": text})
        calls = [{"id": f"call_{r.getrandbits(48):012x}", "type": "function",
                  "function": {"name": t["name"], "arguments": json.dumps(args)}} for t, (_, args) in zip(chosen, asks)]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        results = []
        for call in calls:
            results.append(self.result())
            messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                             "content": json.dumps(results[-1])})
        quoted = [str(v) for res in results for v in res.values() if not isinstance(v, dict | list)][:3]
        answer = " ".join([self.cap(self.phrase(1, 5))] + [f"{q} {self.phrase(0, 3)}".strip() for q in quoted])
        messages.append({"role": "assistant", "content": answer.strip() + "."})
        return {"messages": messages, "tools": declarations}

    @staticmethod
    def declaration(tool: dict) -> dict:
        def clean(schema: dict) -> dict:
            out = {k: v for k, v in schema.items() if not k.startswith("x-")}
            if "items" in out:
                out["items"] = clean(out["items"])
            if "properties" in out:
                out["properties"] = {k: clean(v) for k, v in out["properties"].items()}
                out["additionalProperties"] = False
            if schema.get("x-kind") == "code":
                out["pattern"] = "^" + "".join(r"\d" if c == "#" else "[A-Z]" if c == "@" else "\\" + c if c in ".-/"
                                               else c for c in schema["x-layout"]) + "$"
            return out

        params = {"type": "object", "properties": {k: clean(v) for k, v in tool["props"].items()},
                  "required": tool["required"], "additionalProperties": False}
        return {"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                                 "parameters": params}}


def conversations(words: list[str], n: int, seed: int = 0):
    """`n` conversations in OpenAI's chat layout with tools (what `dsft train` reads)."""
    writer = Writer(words, random.Random(f"warm-corpus:{seed}"))
    for _ in range(n):
        yield writer.conversation()
