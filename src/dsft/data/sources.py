"""Reading raw files into records, each tagged with the file and line where it starts.

One reader handles JSON Lines, pretty-printed JSON objects one after another (the way the
user's guide prints its examples) and several objects on one line: it reads line by line and
only buffers a record while its JSON is still open, so memory stays flat however large the
file. JSON arrays are read whole (use JSON Lines for large data). CSV and Parquet rows become
records too. A broken record never stops the reader: it becomes a `Record` with a `Finding`,
and reading resumes at the next record.
"""

from __future__ import annotations

import codecs
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from dsft.data.codes import Finding, InputError

JSON_SUFFIXES = {".jsonl", ".json", ".ndjson", ".jsonlines"}
CSV_SUFFIXES = {".csv", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
SUPPORTED = JSON_SUFFIXES | CSV_SUFFIXES | PARQUET_SUFFIXES
# CSV cells under these columns hold JSON (lists of messages, tool specs...).
JSON_COLUMNS = {"messages", "conversations", "tools", "functions", "metadata", "history", "parallel_tool_calls"}
MAX_RECORD_BYTES = 64 * 1024 * 1024
# Top-level values left as raw bytes that repeat byte for byte from row to row: parsed once.
_TOOLS, _FUNCTIONS = b'"tools"', b'"functions"'
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])


@dataclass(slots=True)
class Record:
    """One raw record: the parsed object, or the finding that says why it could not be parsed."""

    file: str
    line: int
    text: str | bytes  # the source text; the JSONL fast path keeps the line's bytes, decoded only if needed
    data: Any = None
    finding: Finding | None = None

    def source_text(self) -> str:
        return self.text.decode("utf-8").strip() if isinstance(self.text, bytes) else self.text


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    kind: str  # "json" | "csv" | "parquet"

    @property
    def name(self) -> str:
        return str(self.path)


def discover(paths: Iterable[str | Path]) -> list[InputFile]:
    """Expand folders and check every input before any row is read.

    All unreadable inputs are reported together (InputError, exit 2), so a user fixes them in
    one go and a dataset is never prepared from a silently shortened list of files.
    """
    files: list[InputFile] = []
    problems: list[Finding] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(Finding("file_not_found", "the path does not exist", str(path)))
        elif path.is_dir():
            found = prepared_examples(path)
            if found is None:
                found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED
                               and not _side_file(p))
            if not found:
                problems.append(Finding("unsupported_file", f"the folder holds no {', '.join(sorted(SUPPORTED))} files",
                                        str(path)))
            for p in found:
                _sniff(p, files, problems)
        else:
            _sniff(path, files, problems)
    if problems:
        raise InputError(problems)
    return files


PREPARED_EXAMPLES = ("train.jsonl", "validation.jsonl")  # what `data prepare` keeps; the rest it set aside
SIDE_FILES = ("report.json", "rejects.jsonl", "duplicates.jsonl")


def prepared_examples(folder: Path) -> list[Path] | None:
    """A `dsft data prepare` folder's usable examples (train and validation; an empty validation is
    a dataset too small to split), or None when `folder` is not one (no report.json of dsft's)."""
    report = folder / "report.json"
    if not report.is_file() or not (folder / "train.jsonl").is_file():
        return None
    try:
        if "dataset_id" not in orjson.loads(report.read_bytes()):
            return None
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None
    return [p for p in (folder / name for name in PREPARED_EXAMPLES) if p.is_file() and p.stat().st_size]


def _side_file(path: Path) -> bool:
    """A file dsft writes beside a prepared dataset (in a folder that holds one, below the one given)."""
    if path.name not in SIDE_FILES + PREPARED_EXAMPLES:
        return False
    kept = prepared_examples(path.parent)
    return kept is not None and path not in kept


def _sniff(path: Path, files: list[InputFile], problems: list[Finding]) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        problems.append(Finding("unreadable_file", f"cannot be read: {e.strerror}", str(path)))
        return
    suffix = path.suffix.lower()
    if head.startswith(b"PAR1") or suffix in PARQUET_SUFFIXES:
        files.append(InputFile(path, "parquet"))
        return
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        problems.append(Finding("empty_file", "the file is empty", str(path)))
        return
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        problems.append(Finding("not_utf8", "the file is UTF-16, not UTF-8", str(path), 1))
        return
    if b"\x00" in head:
        problems.append(Finding("binary_file", "the file holds NUL bytes: it is binary, not text", str(path)))
        return
    if suffix in CSV_SUFFIXES:
        files.append(InputFile(path, "csv"))
    elif suffix in JSON_SUFFIXES or head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"["):
        files.append(InputFile(path, "json"))
    else:
        problems.append(Finding("unsupported_file", f"unknown file type '{suffix}', and the content does not start with {{ or [", str(path)))


def read_records(files: Iterable[InputFile]) -> Iterator[Record]:
    for f in files:
        reader = {"json": read_json, "csv": read_csv, "parquet": read_parquet}[f.kind]
        yield from reader(f.path)


# ---------------------------------------------------------------- JSON text

def read_json(path: Path) -> Iterator[Record]:
    name = str(path)
    with open(path, "rb", buffering=1 << 20) as f:  # fewer read calls for the line iterator
        head = f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")
        f.seek(0)
        if head.startswith(b"["):
            yield from _read_array(name, f.read())
            return
        yield from _JsonLines(name).read(f)


class _JsonLines:
    """Line-oriented JSON reader that also accepts multi-line (pretty-printed) records."""

    def __init__(self, name: str):
        self.name = name
        self.buf: list[str] = []
        self.start = 0
        self.size = 0
        self.shared: dict[bytes, Any] = {}  # raw bytes of a tool list -> the one parsed copy every row shares
        self.last: tuple[msgspec.Raw, Any] = (msgspec.Raw(b""), None)  # the list the previous row had (Raw
        # compares equal to Raw only)

    def read(self, f) -> Iterator[Record]:
        name, loads, with_shared = self.name, orjson.loads, self._with_shared
        if f.peek(3)[:3] == codecs.BOM_UTF8:
            f.read(3)
        for lineno, raw in enumerate(f, 1):
            if raw[0] == 123 and not self.buf:  # "{": one object per line, the common case: parse the bytes as they are
                try:
                    data = with_shared(raw) if _TOOLS in raw or _FUNCTIONS in raw else loads(raw)
                except (orjson.JSONDecodeError, msgspec.DecodeError):
                    pass  # not UTF-8, not complete, not alone on its line...: the general path says which
                else:
                    yield Record(name, lineno, raw, data)
                    continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield from self._bad_bytes(lineno, raw, e)
                continue
            yield from self._line(lineno, line)
        if self.buf:
            yield self._fail("truncated_record", "the file ends before this record's JSON is complete")

    def _with_shared(self, raw: bytes) -> dict[str, Any]:
        """Parse a record whose tool list is most likely the one the previous rows declared.

        OpenAI's layout repeats the whole tool list on every row, and it is most of the row's
        bytes: the record is split into its top-level values as raw bytes (msgspec), the tool
        list is looked up by its exact bytes and parsed only the first time, and only the rest
        is parsed. Every value is still parsed by the same parser as the ordinary path (or is
        byte-identical to one that was), so a row is accepted or refused exactly as before; the
        parsed tool list is shared between rows and must not be mutated."""
        data = {}
        for key, value in _FIELDS.decode(raw).items():
            if key == "tools" or key == "functions":
                if value == self.last[0]:  # the usual case: a compare, no copy and no hash of the bytes
                    data[key] = self.last[1]
                    continue
                exact = bytes(value)
                parsed = self.shared.get(exact)
                if parsed is None:
                    parsed = orjson.loads(exact)
                    if len(self.shared) >= 64:  # bounded: a file that never repeats its lists gains nothing
                        self.shared.clear()
                    self.shared[exact] = parsed
                data[key] = parsed
                self.last = (value, parsed)
            else:
                data[key] = orjson.loads(memoryview(value))
        return data

    def _bad_bytes(self, lineno: int, raw: bytes, e: UnicodeDecodeError) -> Iterator[Record]:
        where = f"byte {e.start + 1} of line {lineno}"
        if self.buf:  # the bad byte is inside an open multi-line record: that record is lost
            self.buf.append(raw.decode("utf-8", "replace"))
            yield self._fail("not_utf8", f"invalid UTF-8 ({raw[e.start:e.start + 1]!r}) at {where}")
        else:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            yield Record(self.name, lineno, text,
                         finding=Finding("not_utf8", f"invalid UTF-8 ({raw[e.start:e.start + 1]!r}) at {where}",
                                         self.name, lineno))

    def _line(self, lineno: int, line: str) -> Iterator[Record]:
        if self.buf:
            if line[:1] == "{":  # a new record starts at column 0: the open one never closed
                yield self._fail("truncated_record",
                                 f"record is not complete when a new one starts on line {lineno}")
            else:
                self.buf.append(line)
                self.size += len(line)
                if self.size > MAX_RECORD_BYTES:
                    yield self._fail("record_too_large", f"record exceeds {MAX_RECORD_BYTES >> 20} MiB")
                elif line.rstrip()[-1:] in ("}", "]"):
                    yield from self._try_buffer()
                return
        text = line.strip()
        if not text:
            return
        try:
            yield Record(self.name, lineno, text, orjson.loads(text))
            return
        except orjson.JSONDecodeError as e:
            if e.msg.startswith("unexpected end of data") and text[0] in "{[":
                self.buf, self.start, self.size = [line], lineno, len(line)
                return
            if e.msg.startswith("unexpected content after document"):
                yield from _split_objects(self.name, lineno, text)
                return
            yield Record(self.name, lineno, text,
                         finding=Finding("invalid_json", _json_reason(e), self.name, lineno))

    def _try_buffer(self) -> Iterator[Record]:
        text = "".join(self.buf).strip()
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            if e.msg.startswith("unexpected end of data"):
                return  # still open: keep reading
            reason = _json_reason(e, self.start)
            yield self._fail("invalid_json", reason)
            return
        self.buf = []
        yield Record(self.name, self.start, text, data)

    def _fail(self, code: str, reason: str) -> Record:
        text = "".join(self.buf).strip()
        self.buf = []
        return Record(self.name, self.start, text, finding=Finding(code, reason, self.name, self.start))


def _json_reason(e: json.JSONDecodeError, first_line: int = 1) -> str:
    line = first_line + e.lineno - 1
    return f"{e.msg} (line {line}, column {e.colno})"


def _split_objects(name: str, lineno: int, text: str) -> Iterator[Record]:
    """Several JSON values on one line: `{...}{...}`."""
    decoder, pos = json.JSONDecoder(), 0
    while pos < len(text):
        try:
            data, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            yield Record(name, lineno, text[pos:], finding=Finding("invalid_json", _json_reason(e, lineno), name, lineno))
            return
        yield Record(name, lineno, text[pos:end], data)
        pos = end
        while pos < len(text) and text[pos] in " \t,":
            pos += 1


def _read_array(name: str, blob: bytes) -> Iterator[Record]:
    """A JSON array, element by element, so one bad element does not hide the others."""
    if blob.startswith(codecs.BOM_UTF8):
        blob = blob[3:]
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        line = blob[: e.start].count(b"\n") + 1
        yield Record(name, line, "", finding=Finding("not_utf8", f"invalid UTF-8 at byte {e.start + 1} (line {line}); "
                                                      "a JSON array cannot be read past it", name, line))
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            yield Record(name, line_at(pos), "", finding=Finding("truncated_record", "the JSON array is never closed with ]",
                                                                 name, line_at(pos)))
            return
        if text[pos] == "]":
            rest = text[pos + 1:].strip()
            if rest:
                at = line_at(pos)
                yield Record(name, at, rest, finding=Finding("invalid_json", "text after the closing ] of the array",
                                                             name, at))
            return
        start_line = line_at(pos)
        try:
            data, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            code = "truncated_record" if e.pos >= len(text.rstrip()) else "invalid_json"
            # Resume at the next element that starts on a line of its own at the same indent.
            col = pos - (text.rfind("\n", 0, pos) + 1)
            nxt = text.find("\n" + text[pos - col:pos] + "{", e.pos)
            end = len(text) if nxt < 0 else nxt + 1
            yield Record(name, start_line, text[pos:end].strip(),
                         finding=Finding(code, _json_reason(e), name, start_line))
            if nxt < 0:
                return
            pos = end
            continue
        yield Record(name, start_line, text[pos:end], data)
        pos = end


# ---------------------------------------------------------------- CSV and Parquet

def read_csv(path: Path) -> Iterator[Record]:
    """CSV/TSV with a header row; JSON-valued columns (messages, tools...) are decoded."""
    name = str(path)
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            text = delimiter.join(row)
            if not any(cell.strip() for cell in row):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                yield Record(name, line, text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                             finding=Finding("not_utf8", "row holds bytes that are not valid UTF-8", name, line))
                continue
            if len(row) != len(header):
                yield Record(name, line, text, finding=Finding(
                    "invalid_json" if len(row) > len(header) else "truncated_record",
                    f"row has {len(row)} cells, the header has {len(header)}", name, line))
                continue
            yield _table_record(name, line, text, dict(zip(header, row)))


def _table_record(name: str, line: int, text: str, row: dict[str, Any]) -> Record:
    data: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value == "":
            continue
        if key in JSON_COLUMNS and isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as e:
                return Record(name, line, text, finding=Finding(
                    "invalid_json", f"column '{key}' does not hold valid JSON: {e.msg}", name, line))
        data[key] = value
    return Record(name, line, text, data)


def read_parquet(path: Path) -> Iterator[Record]:
    """Parquet rows; a record's 'line' is its 1-based row number."""
    import pyarrow.parquet as pq

    name = str(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        yield Record(name, 1, "", finding=Finding("unreadable_file", f"not a readable Parquet file: {e}", name))
        return
    row_no = 0
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            row_no += 1
            row = {k: v for k, v in row.items() if v is not None}
            text = orjson.dumps(row, default=str).decode()
            yield _table_record(name, row_no, text, row)
