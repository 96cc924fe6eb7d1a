"""Read -> convert -> check -> score -> deduplicate, one record at a time.

`scan()` is the single path every data command takes (validate, prepare, the API's scoring):
it yields one `Row` per input record, so a record is judged the same way everywhere. Memory
held across rows is bounded by what deduplication and the split need: a digest per kept row.

Rows are judged as canonical dicts, the shape `Conversation.model_dump(exclude_none=True)`
gives. `survey` accepts only dicts whose every field already has the type the pydantic model
demands; anything else is handed to pydantic, which coerces it or explains what is wrong.
Building pydantic objects for every row cost a quarter of the scan's time, and a `Conversation`
is still one attribute away (`Row.conv`) for code that wants it.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from dsft.data import checks, layouts, quality, sources
from dsft.data.codes import CODES, Finding
from dsft.data.conversation import Conversation, Tool
from dsft.data.dedup import ExactDeduper, NearDeduper, digest, normal_form, plain_text
from dsft.data.survey import Survey, survey
from dsft.data.tokens import Counter as TokenCounter


@dataclass
class Options:
    """How records are judged. Defaults are what `dsft data validate` uses."""

    format: str | None = None  # force a layout instead of detecting it per record
    tools: list[dict] | None = None  # declarations attached to examples that declare none
    limits: checks.Limits = field(default_factory=checks.Limits)
    scorer: str = "dsft"
    min_quality: float | None = None
    near_dup: float | None = None  # Jaccard threshold; None = exact duplicates only
    token_counter: TokenCounter | None = None  # None = the documented estimate


@dataclass(slots=True)
class ToolSet:
    """One distinct tool list, converted and compiled once however many rows repeat it."""

    tools: list[dict]  # canonical, shared by every row that declares them: never mutated
    problems: list[tuple[str, str]]
    validators: dict
    json: bytes  # `tools` serialized once
    names: str  # sorted, comma-joined: part of the dedup normal form

    @property
    def nbytes(self) -> int:
        return len(self.json)


@dataclass(slots=True)
class Row:
    """The verdict on one input record."""

    record: sources.Record
    findings: list[Finding]
    layout: str | None = None
    data: dict | None = None  # the canonical dict, set once the row converted and type-checked
    toolset: ToolSet | None = None  # where data["tools"] came from, when it is the shared cached list
    tokens: int = 0
    facts: Survey | None = None
    scores: dict[str, int] = field(default_factory=dict)
    digest: bytes = b""
    duplicate_of: int | None = None  # index of the kept row it duplicates
    duplicate_kind: str = ""
    rejected: bool = False  # some finding is an error; kept in step by `add`
    _conv: Conversation | None = None

    @property
    def conv(self) -> Conversation | None:
        """The row as a pydantic `Conversation`, built on first use."""
        if self._conv is None and self.data is not None:
            self._conv = Conversation.model_validate(self.data)
        return self._conv

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        if CODES[finding.code].severity == "error":
            self.rejected = True

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def task_type(self) -> str:
        """The split's stratum: metadata.task_type if given, else the tools called, else the layout."""
        assert self.data is not None
        given = self.data["metadata"].get("task_type")
        if isinstance(given, str) and given:
            return given
        called = self.facts.call_names
        if called:
            return "tool:" + "+".join(sorted(set(called)))
        if self.data.get("tools"):
            return "tool:none"
        return self.layout or "chat"


NO_TOOLS = ToolSet([], [], {}, b"[]", "")


class Scanner:
    """Judges records one by one; keeps the little state that spans rows."""

    def __init__(self, options: Options):
        self.opts = options
        self.schemas = checks.SchemaCache()
        self.count_tokens = options.token_counter
        self._tool_sets: dict[bytes, ToolSet] = {}
        self._shared: dict[tuple[int, int], tuple[Any, Any, ToolSet]] = {}  # by identity: no re-serializing
        self._toolset = NO_TOOLS  # the current row's tools
        self._attached = self._resolve(options.tools, None) if options.tools is not None else None
        self.exact = ExactDeduper()
        self.near = NearDeduper(options.near_dup) if options.near_dup else None
        self.example_ids: dict[Any, str] = {}
        self.kept = 0
        self._files: list[str] = []  # origins of kept rows, two compact arrays by kept index
        self._file_ids: dict[str, int] = {}
        self._origin_file = array("I")
        self._origin_line = array("I")
        self.final_replies: Counter[int] = Counter()  # by str hash: only compared within this process

    def scan(self, records: Iterable[sources.Record]) -> Iterator[Row]:
        for record in records:
            row = self.judge(record)
            if not row.rejected:
                self._dedup(row)
            yield row

    def judge(self, record: sources.Record) -> Row:
        row = Row(record, [])

        def err(code: str, message: str) -> None:
            row.add(Finding(code, message, record.file, record.line))

        if record.finding is not None:
            row.add(record.finding)
            return row
        data = record.data
        if type(data) is not dict:
            err("not_an_object", f"the record is {layouts.type_name(data)}, not an object")
            return row
        self._toolset = NO_TOOLS
        positions: list[str] = []
        row.layout, conv = layouts.convert(data, err, self.opts.format, self._tools, positions)
        if conv is None:
            return row
        if positions:
            def err(code: str, message: str) -> None:  # noqa: F811 (the checks name the user's own positions)
                row.add(Finding(code, layouts.in_user_terms(message, positions), record.file, record.line))

        if self._attached is not None and "tools" not in conv:
            conv["tools"], self._toolset = self._attached.tools, self._attached
            for code, message in self._attached.problems:
                err(code, message)
        toolset = self._toolset
        facts = survey(conv)
        if facts is None:
            try:
                row._conv = Conversation.model_validate(conv)
            except ValidationError as e:
                for problem in e.errors()[:5]:
                    loc = ".".join(str(p) for p in problem["loc"])
                    err("invalid_field", f"{loc}: {problem['msg']}")
                return row
            conv = row._conv.model_dump(exclude_none=True)
            facts = survey(conv)
        elif "tools" in conv:
            row.toolset = toolset
        row.data, row.facts = conv, facts
        if self.count_tokens:
            row.tokens = self.count_tokens(row.conv)
        else:
            row.tokens = facts.approx_tokens(toolset.nbytes if conv.get("tools") else 0)
        checks.check(conv, err, toolset.validators, row.tokens, self.opts.limits,
                     args_parsed=not (row.findings and row.has("invalid_arguments_json")), facts=facts)
        self._check_id(row, err)
        row.scores = {"dsft": quality.dsft_score(row.codes) if row.findings else 100,
                      "guide": quality.guide_score(facts)}
        if self.opts.min_quality is not None and not row.rejected:
            score = row.scores[self.opts.scorer]
            if score < self.opts.min_quality:
                err("low_quality", f"{self.opts.scorer} score {score} < --min-quality {self.opts.min_quality:g}")
        return row

    def _tools(self, tools: Any, functions: Any, err) -> list[dict] | None:
        """layouts' tools_fn: the row's declarations from the cache, with their problems re-reported."""
        if tools is None and functions is None:
            return None
        self._toolset = self._resolve(tools, functions)
        for code, message in self._toolset.problems:
            err(code, message)
        return self._toolset.tools

    def _resolve(self, tools: Any, functions: Any) -> ToolSet:
        same = self._shared.get((id(tools), id(functions)))
        if same is not None and same[0] is tools and same[1] is functions:  # the reader's shared parse of a list
            return same[2]
        key = orjson.dumps([tools, functions])
        hit = self._tool_sets.get(key)
        if hit is None:
            problems: list[tuple[str, str]] = []

            def note(code: str, message: str) -> None:
                problems.append((code, message))

            specs = layouts.tools_from(tools, functions, note) or []
            objs = []
            for k, spec in enumerate(specs):
                try:
                    objs.append(Tool.model_validate(spec))
                except ValidationError as e:
                    note("invalid_tools", f"tools[{k}]: {e.errors()[0]['msg']}")
            validators = checks.compile_tools(objs, note, self.schemas)
            dicts = [t.model_dump() for t in objs]
            hit = ToolSet(dicts, problems, validators, orjson.dumps(dicts), ",".join(sorted(t.name for t in objs)))
            if len(self._tool_sets) > 4096:
                self._tool_sets.clear()
            self._tool_sets[key] = hit
        if len(self._shared) >= 256:
            self._shared.clear()
        self._shared[id(tools), id(functions)] = (tools, functions, hit)  # holding them keeps the ids unique
        return hit

    def _check_id(self, row: Row, err) -> None:
        example_id = row.data["metadata"].get("id")
        if example_id is None or not isinstance(example_id, str | int):
            return
        first = self.example_ids.setdefault(example_id, f"{row.record.file}:{row.record.line}")
        if first != f"{row.record.file}:{row.record.line}":
            err("duplicate_example_id", f"id {example_id!r} was first used at {first}")

    def _dedup(self, row: Row) -> None:
        if row.toolset is not None:
            names = row.toolset.names
        else:
            tools = row.data.get("tools")
            names = ",".join(sorted(t["name"] for t in tools)) if tools else ""
        row.digest = digest(normal_form(row.facts, names))
        first = self.exact.seen(row.digest, self.kept)
        kind = "exact"
        if first is None and self.near is not None:
            first, kind = self.near.seen(plain_text(row.data), self.kept), "near"
        if first is not None:
            row.duplicate_of, row.duplicate_kind = first, kind
            return
        self.kept += 1
        file_id = self._file_ids.setdefault(row.record.file, len(self._files))
        if file_id == len(self._files):
            self._files.append(row.record.file)
        self._origin_file.append(file_id)
        self._origin_line.append(row.record.line)
        last = row.facts.final_reply
        if last is not None:
            self.final_replies[hash(last.strip())] += 1
            if len(self.final_replies) > 100_000:  # bounded: a reply seen once so far cannot be a majority yet
                self.final_replies = Counter({k: n for k, n in self.final_replies.items() if n > 1})

    def origin(self, kept_index: int) -> tuple[str, int]:
        """(file, line) of a kept row."""
        return self._files[self._origin_file[kept_index]], self._origin_line[kept_index]

    def dataset_findings(self) -> list[Finding]:
        """Problems only the whole dataset shows: one reply given to most prompts."""
        out = []
        if self.kept >= 10 and self.final_replies:
            _, n = self.final_replies.most_common(1)[0]
            if n / self.kept > 0.5:
                out.append(Finding("identical_assistant_replies",
                                   f"{n} of {self.kept} examples end with the same assistant reply"))
        return out


def to_conversation(record: dict, options: Options | None = None, prompt: bool = False) -> Conversation:
    """One record in any layout -> Conversation, or ValueError listing its errors (for code, not files).

    `prompt=True` accepts a conversation to be continued (a request to a model): no assistant turn
    to learn from is expected then."""
    row = Scanner(options or Options()).judge(sources.Record("<record>", 1, "", record))
    allowed = {"no_assistant_turn"} if prompt else set()
    errors = [f for f in row.findings if f.severity == "error" and f.code not in allowed]
    if errors or row.conv is None:
        raise ValueError("; ".join(f"[{f.code}] {f.message}" for f in errors) or "not a conversation")
    return row.conv
