"""`dsft data validate`: judge every record without writing a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.data import sources
from dsft.data.codes import Finding
from dsft.data.pipeline import Options, Scanner
from dsft.data.report import Tally


@dataclass
class Validation:
    tally: Tally
    findings: list[Finding] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 clean (warnings allowed), 1 some rows have errors, 2 an input cannot be read at all."""
        if self.tally.fatal:
            return 2
        return 1 if self.tally.errors else 0

    def to_dict(self) -> dict[str, Any]:
        t = self.tally
        return {"ok": self.exit_code == 0, "exit_code": self.exit_code,
                "counts": {"read": t.read, "valid": t.read - t.rejected, "rejected": t.rejected,
                           "duplicates": t.duplicates, "errors": t.errors, "warnings": t.warnings},
                "layouts": dict(t.layouts), "summary": t.findings_summary(),
                "findings": [f.to_dict() for f in self.findings]}


def validate(inputs: list[str | Path], options: Options | None = None) -> Validation:
    """Raises InputError (exit 2) when an input cannot be opened at all."""
    scanner = Scanner(options or Options())
    result = Validation(Tally())
    for row in scanner.scan(sources.read_records(sources.discover(inputs))):
        result.tally.add_row(row)
        result.findings.extend(row.findings)
        if row.duplicate_of is not None:
            f = Finding("duplicate_example" if row.duplicate_kind == "exact" else "near_duplicate_example",
                        "duplicates {}:{}".format(*scanner.origin(row.duplicate_of)), row.record.file, row.record.line)
            result.tally.add_finding(f)
            result.findings.append(f)
    for f in scanner.dataset_findings():
        result.tally.add_finding(f)
        result.findings.append(f)
    return result
