"""`dsft data prepare`: raw files in, a split, content-hashed dataset folder out.

Output (written to a temporary folder beside `out`, moved into place only when complete):

    train.jsonl, validation.jsonl   canonical conversations
    rejects.jsonl                   original text, file, line and findings of every rejected row
    duplicates.jsonl                each duplicate, canonical, with the row it duplicates
    report.json, report.md          counts that add up, findings, lengths, quality

Nothing is lost: every record read lands in exactly one of the four .jsonl files, and the
report says so (`counts.balanced`). The dataset id is
sha256(b"train\n" + sha256(train.jsonl) + b"validation\n" + sha256(validation.jsonl)) over the
files' exact bytes, so it names precisely what a model was trained on and can be re-checked.

Rows are written as they are judged, in one pass: training rows straight to train.jsonl, and
the few that might still be chosen for validation (see `split.StreamingSplit`) to a side file
until the counts are known. So train.jsonl holds its rows in input order, except that those
held aside come last; validation.jsonl holds its rows in input order.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from dsft import __version__
from dsft.data import sources
from dsft.data.pipeline import Options, Row, Scanner
from dsft.data.report import Tally, to_markdown
from dsft.data.split import StreamingSplit
from dsft.data.tokens import APPROXIMATION
from dsft.errors import UserError


@dataclass
class PrepareResult:
    out: Path
    report: dict[str, Any]

    @property
    def dataset_id(self) -> str:
        return self.report["dataset_id"]


def prepare(inputs: list[str | Path], out: str | Path, options: Options | None = None, *,
            val_ratio: float = 0.1, seed: int = 0, force: bool = False, token_stats: bool = True,
            tokenizer_name: str | None = None) -> PrepareResult:
    options = options or Options()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"{out} already exists and is not empty", "choose another --out, or pass --force to replace it")
    if not 0.0 <= val_ratio < 1.0:
        raise UserError(f"--val-ratio {val_ratio} is outside [0, 1)", "use e.g. --val-ratio 0.1")
    files = sources.discover(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        report = _write(files, tmp, options, val_ratio, seed, token_stats, tokenizer_name)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(out, report)


def _write(files, tmp: Path, options: Options, val_ratio: float, seed: int, token_stats: bool,
           tokenizer_name: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    scanner = Scanner(options)
    tally = Tally()
    split = StreamingSplit(val_ratio, seed)
    sizes = array("I")  # per kept row: its length in train.jsonl or candidates.tmp
    train_sha = hashlib.sha256()
    buffered = 1 << 20  # rows are ~0.5-2 KB: small writes would cost a syscall every few rows
    with open(tmp / "train.jsonl", "wb", buffering=buffered) as train, \
            open(tmp / "candidates.tmp", "wb", buffering=buffered) as held, \
            open(tmp / "rejects.jsonl", "wb", buffering=buffered) as rejects, \
            open(tmp / "duplicates.jsonl", "wb", buffering=buffered) as dups:
        for row in scanner.scan(sources.read_records(files)):
            tally.add_row(row)
            rec = row.record
            if row.rejected:
                rejects.write(orjson.dumps({
                    "file": rec.file, "line": rec.line, "codes": sorted(set(row.codes)),
                    "findings": [{"code": f.code, "message": f.message} for f in row.findings],
                    "text": rec.source_text()}) + b"\n")
                continue
            if row.duplicate_of is not None:
                first_file, first_line = scanner.origin(row.duplicate_of)
                dups.write(orjson.dumps({
                    "file": rec.file, "line": rec.line, "kind": row.duplicate_kind,
                    "duplicate_of": {"file": first_file, "line": first_line},
                    "conversation": orjson.Fragment(_canonical(row))}) + b"\n")
                continue
            task = row.task_type()
            line = _canonical(row, task, orjson.OPT_APPEND_NEWLINE)
            sizes.append(len(line))
            if split.offer(task, row.digest):
                held.write(line)
            else:
                train.write(line)
                train_sha.update(line)

    val, complete = split.choose()
    train_digest, val_digest = _place_candidates(tmp, split, sizes, val, complete, train_sha)
    sha = hashlib.sha256(b"train\n" + train_digest + b"validation\n" + val_digest)
    per_task: dict[str, Counter] = defaultdict(Counter)
    for name, n in zip(split.names, split.counts):
        per_task[name]["train"] = n
    for i in val:
        task = per_task[split.names[split.strata[i]]]
        task["train"] -= 1
        task["validation"] += 1

    dataset_findings = scanner.dataset_findings()
    for f in dataset_findings:
        tally.add_finding(f)
    n_val = len(val)
    counts = {"read": tally.read, "train": len(sizes) - n_val, "validation": n_val,
              "rejected": tally.rejected, "duplicates": tally.duplicates}
    counts["balanced"] = counts["read"] == counts["train"] + counts["validation"] + counts["rejected"] + counts["duplicates"]
    report = {
        "dataset_id": sha.hexdigest(),
        "dsft_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": dict(tally.files),
        "options": {"format": options.format, "val_ratio": val_ratio, "seed": seed, "scorer": options.scorer,
                    "min_quality": options.min_quality, "near_dup": options.near_dup,
                    "min_tokens": options.limits.min_tokens, "max_tokens": options.limits.max_tokens,
                    "tools_attached": options.tools is not None},
        "counts": counts,
        "layouts": dict(tally.layouts.most_common()),
        "findings": tally.findings_summary(),
        "task_types": {k: {"train": v["train"], "validation": v["validation"]}
                       for k, v in sorted(per_task.items(), key=lambda kv: -sum(kv[1].values()))},
        "tools": dict(tally.tools.most_common()),
        "tokens": {"method": f"tokenizer {tokenizer_name}" if tokenizer_name else APPROXIMATION,
                   **(tally.token_stats() if token_stats else {"count": 0, "skipped": True})},
        "quality": tally.quality_stats(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    (tmp / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    (tmp / "report.md").write_text(to_markdown(report), encoding="utf-8")
    if not counts["balanced"]:  # a bug, never a user error: refuse to hand out a dataset that lost rows
        raise RuntimeError(f"row accounting does not add up: {counts}")
    return report


def _place_candidates(tmp: Path, split: StreamingSplit, sizes: array, val: set[int], complete: bool,
                      train_sha) -> tuple[bytes, bytes]:
    """Move the held-aside candidates to validation.jsonl (in input order) or to the end of
    train.jsonl; return both files' sha256 digests. In the rare incomplete case some rows
    already in train.jsonl were chosen too: train.jsonl is then rebuilt from its rows and the
    candidates, by the same rule (training rows never held aside, then the held ones, each in
    input order), so the files depend only on the rows and the seed either way."""
    val_sha = hashlib.sha256()
    buffered = 1 << 20
    held = split.candidates
    with open(tmp / "candidates.tmp", "rb", buffering=buffered) as cands, \
            open(tmp / "validation.jsonl", "wb", buffering=buffered) as out_val:
        if complete:
            with open(tmp / "train.jsonl", "ab", buffering=buffered) as out_train:
                for i in held:
                    line = _read_exact(cands, sizes[i])
                    if i in val:
                        out_val.write(line)
                        val_sha.update(line)
                    else:
                        out_train.write(line)
                        train_sha.update(line)
        else:
            (tmp / "train.jsonl").rename(tmp / "direct.tmp")
            train_sha, is_held = hashlib.sha256(), set(held)
            with open(tmp / "direct.tmp", "rb", buffering=buffered) as direct, \
                    open(tmp / "train.jsonl", "wb", buffering=buffered) as out_train:
                for i in range(len(sizes)):  # every row in input order, from the file it went to
                    line = _read_exact(cands if i in is_held else direct, sizes[i])
                    if i in val:
                        out_val.write(line)
                        val_sha.update(line)
                    elif i not in is_held:
                        out_train.write(line)
                        train_sha.update(line)
                _at_end(direct)
                _at_end(cands)
                cands.seek(0)
                for i in held:
                    line = _read_exact(cands, sizes[i])
                    if i not in val:
                        out_train.write(line)
                        train_sha.update(line)
            (tmp / "direct.tmp").unlink()
        _at_end(cands)
    (tmp / "candidates.tmp").unlink()
    return train_sha.digest(), val_sha.digest()


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise RuntimeError("a temporary file is shorter than the rows written to it")
    return data


def _at_end(f) -> None:
    if f.read(1):
        raise RuntimeError("a temporary file is longer than the rows written to it")


def _canonical(row: Row, task_type: str | None = None, option: int = 0) -> bytes:
    """The row as written: canonical JSON, with dsft's own notes under metadata.dsft.

    Keys come in the model's field order; a message passed through from the input keeps its
    own key order. The shared tool list is spliced in as the bytes serialized once per list."""
    data = row.data
    meta = data["metadata"]
    meta["dsft"] = {"origin": f"{row.record.file}:{row.record.line}", "quality": row.scores,
                    "tokens": row.tokens, **({"task_type": task_type} if task_type else {})}
    out: dict[str, Any] = {"messages": data["messages"]}
    if "tools" in data:
        out["tools"] = orjson.Fragment(row.toolset.json) if row.toolset is not None else data["tools"]
    if "parallel_tool_calls" in data:
        out["parallel_tool_calls"] = data["parallel_tool_calls"]
    out["metadata"] = meta
    return orjson.dumps(out, default=_json_default, option=option)


def _json_default(value: Any) -> Any:
    """Metadata from CSV/Parquet may hold values JSON has no type for: written as text, never dropped."""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
