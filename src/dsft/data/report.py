"""Tallies of a scan, and the report in JSON (for machines) and Markdown (for people)."""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from dsft.data.codes import CODES, Finding

FIRST_N = 3


@dataclass
class Tally:
    """Counts that add up: every record read is counted once as train, validation, rejected or duplicate."""

    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    layouts: Counter = field(default_factory=Counter)
    code_counts: Counter = field(default_factory=Counter)
    code_first: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    code_said: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # their precise messages
    code_rows: Counter = field(default_factory=Counter)  # rows carrying the code (a row counts once)
    tools: Counter = field(default_factory=Counter)
    files: Counter = field(default_factory=Counter)
    tokens: array = field(default_factory=lambda: array("I"))
    quality: dict[str, Counter] = field(default_factory=lambda: {"dsft": Counter(), "guide": Counter()})
    fatal: bool = False

    def add_finding(self, f: Finding) -> None:
        self.code_counts[f.code] += 1
        if len(self.code_first[f.code]) < FIRST_N:
            self.code_first[f.code].append(f.where())
            self.code_said[f.code].append(f.message)
        if CODES[f.code].fatal:
            self.fatal = True

    def add_row(self, row) -> None:
        self.read += 1
        self.files[row.record.file] += 1
        if row.layout:
            self.layouts[row.layout] += 1
        if row.findings:
            for f in row.findings:
                self.add_finding(f)
            for code in set(row.codes):
                self.code_rows[code] += 1
        if row.rejected:
            self.rejected += 1
        elif row.duplicate_of is not None:
            self.duplicates += 1
        else:
            self.tokens.append(min(row.tokens, 0xFFFFFFFF))
            quality, scores = self.quality, row.scores
            for name in ("dsft", "guide"):
                score = scores[name]
                quality[name][score // 10 if score < 100 else 9] += 1
            if row.facts.call_names:
                self.tools.update(row.facts.call_names)

    @property
    def errors(self) -> int:
        return sum(n for c, n in self.code_counts.items() if CODES[c].severity == "error")

    @property
    def warnings(self) -> int:
        return sum(n for c, n in self.code_counts.items() if CODES[c].severity == "warning")

    def findings_summary(self) -> dict[str, dict[str, Any]]:
        order = sorted(self.code_counts, key=lambda c: (CODES[c].severity != "error", -self.code_counts[c], c))
        return {c: {"severity": CODES[c].severity, "count": self.code_counts[c], "rows": self.code_rows[c],
                    "title": CODES[c].title, "fix": CODES[c].fix, "first": self.code_first[c],
                    "said": self.code_said[c]} for c in order}

    def token_stats(self) -> dict[str, Any]:
        if not self.tokens:
            return {"count": 0}
        ordered = sorted(self.tokens)
        n = len(ordered)

        def pct(p: float) -> int:  # nearest-rank percentile
            return ordered[min(n - 1, max(0, int(round(p / 100 * n + 0.5)) - 1))]

        return {"count": n, "p5": pct(5), "p50": pct(50), "p95": pct(95), "max": ordered[-1],
                "mean": round(sum(ordered) / n, 1), "total": sum(ordered)}

    def quality_stats(self) -> dict[str, Any]:
        out = {}
        for name, hist in self.quality.items():
            total = sum(hist.values())
            mean = sum((b * 10 + 5) * n for b, n in hist.items()) / total if total else None
            out[name] = {"histogram": {f"{b * 10}-{b * 10 + 9 if b < 9 else 100}": hist.get(b, 0) for b in range(10)},
                         "approx_mean": None if mean is None else round(mean, 1)}
        return out


def to_markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    lines = [f"# Dataset {report['dataset_id'][:12]}", "",
             f"- dataset id: `{report['dataset_id']}`",
             f"- inputs: {', '.join(f'{k} ({v} records)' for k, v in report['inputs'].items())}",
             f"- split: validation ratio {report['options']['val_ratio']}, seed {report['options']['seed']}", "",
             "## Where every row went", "", "| read | train | validation | rejected | duplicates | adds up |",
             "|---|---|---|---|---|---|",
             f"| {c['read']} | {c['train']} | {c['validation']} | {c['rejected']} | {c['duplicates']} | "
             f"{'yes' if c['balanced'] else 'NO'} |", "", "## Findings", ""]
    if report["findings"]:
        lines += ["| code | tier | count | rows | first rows | fix |", "|---|---|---|---|---|---|"]
        for code, f in report["findings"].items():
            lines.append(f"| `{code}` | {f['severity']} | {f['count']} | {f['rows']} | {', '.join(f['first'])} | {f['fix']} |")
    else:
        lines.append("None.")
    lines += ["", "## Layouts", "", "| layout | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["layouts"].items()]
    lines += ["", "## Task types", "", "| task type | train | validation |", "|---|---|---|"]
    lines += [f"| {k} | {v['train']} | {v['validation']} |" for k, v in report["task_types"].items()]
    if report["tools"]:
        lines += ["", "## Tool calls", "", "| tool | calls |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in report["tools"].items()]
    t = report["tokens"]
    lines += ["", "## Length (tokens)", "", f"Method: {t['method']}.", ""]
    if t.get("count"):
        lines += ["| p5 | p50 | p95 | max | mean |", "|---|---|---|---|---|",
                  f"| {t['p5']} | {t['p50']} | {t['p95']} | {t['max']} | {t['mean']} |"]
    q = report["quality"]
    lines += ["", f"## Quality (scorer used for filtering: {report['options']['scorer']})", "",
              "| score | " + " | ".join(q) + " |", "|---|" + "---|" * len(q)]
    for bucket in next(iter(q.values()))["histogram"]:
        lines.append(f"| {bucket} | " + " | ".join(str(q[s]["histogram"][bucket]) for s in q) + " |")
    return "\n".join(lines) + "\n"
