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
from dsft.data.split import validation_rows
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
    strata_names: list[str] = []
    strata_index: dict[str, int] = {}
    strata = array("I")  # per kept row: its stratum, its length in kept.tmp (for the second pass)
    sizes = array("I")
    digests: list[bytes] = []
    buffered = 1 << 20  # rows are ~0.5 KB: small writes would cost a syscall every few rows
    with open(tmp / "kept.tmp", "wb", buffering=buffered) as kept, \
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
            stratum = strata_index.get(task)
            if stratum is None:
                stratum = strata_index[task] = len(strata_names)
                strata_names.append(task)
            strata.append(stratum)
            digests.append(row.digest)
            line = _canonical(row, task) + b"\n"
            sizes.append(len(line))
            kept.write(line)

    val = sorted(validation_rows([strata_names[s] for s in strata], digests, val_ratio, seed))
    del digests
    train_sha, val_sha = _split_files(tmp, sizes, val)
    (tmp / "kept.tmp").unlink()
    sha = hashlib.sha256(b"train\n" + train_sha + b"validation\n" + val_sha)
    per_task: dict[str, Counter] = defaultdict(Counter)
    for stratum, n in Counter(strata).items():
        per_task[strata_names[stratum]]["train"] = n
    for i in val:
        task = per_task[strata_names[strata[i]]]
        task["train"] -= 1
        task["validation"] += 1

    dataset_findings = scanner.dataset_findings()
    for f in dataset_findings:
        tally.add_finding(f)
    n_val = len(val)
    counts = {"read": tally.read, "train": len(strata) - n_val, "validation": n_val,
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


def _split_files(tmp: Path, sizes: array, val: list[int]) -> tuple[bytes, bytes]:
    """Copy kept.tmp into train.jsonl and validation.jsonl: the validation rows one by one, the
    runs of training rows between them in large blocks. Returns both files' sha256 digests."""
    train_sha, val_sha = hashlib.sha256(), hashlib.sha256()
    block = 8 << 20

    def copy(src, dst, digest, n: int) -> None:
        while n > 0:
            chunk = src.read(min(n, block))
            if not chunk:
                raise RuntimeError("kept.tmp is shorter than the rows written to it")
            dst.write(chunk)
            digest.update(chunk)
            n -= len(chunk)

    with open(tmp / "kept.tmp", "rb") as src, open(tmp / "train.jsonl", "wb") as train, \
            open(tmp / "validation.jsonl", "wb") as valid:
        nxt = 0  # first row not yet copied
        for i in val:
            copy(src, train, train_sha, sum(sizes[nxt:i]))
            copy(src, valid, val_sha, sizes[i])
            nxt = i + 1
        copy(src, train, train_sha, sum(sizes[nxt:]))
        if src.read(1):
            raise RuntimeError("kept.tmp is longer than the rows written to it")
    return train_sha.digest(), val_sha.digest()


def _canonical(row: Row, task_type: str | None = None) -> bytes:
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
    return orjson.dumps(out, default=_json_default)


def _json_default(value: Any) -> Any:
    """Metadata from CSV/Parquet may hold values JSON has no type for: written as text, never dropped."""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
