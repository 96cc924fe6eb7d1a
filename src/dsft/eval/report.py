"""`--report DIR`: report.json (everything), report.md (for people), a chart; and the headline
table in a run's model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADLINE = ("parse_rate", "tool_name_accuracy", "tool_args_exact_match", "tool_args_bfcl_match", "arg_f1",
            "irrelevance_accuracy", "perplexity")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def headline_table(summary: dict[str, Any]) -> list[str]:
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {k} | {_fmt(summary.get(k))} |" for k in HEADLINE if k in summary]
    text = summary.get("text") or {}
    rows += [f"| text {k} | {_fmt(v)} |" for k, v in text.items() if k != "n" and text.get("n")]
    if summary.get("code"):
        rows.append(f"| code pass@1 | {_fmt(summary['code']['pass@1'])} |")
    return rows


def write_report(folder: Path, summary: dict[str, Any], title: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    lines = [f"# Evaluation: {title}", "", f"{summary.get('n', 0)} examples.", "", *headline_table(summary), ""]
    cats = summary.get("by_category") or {}
    if cats:
        lines += ["## By category", "", "| category | n | tool names | exact arguments |", "|---|---|---|---|"]
        lines += [f"| {c} | {v['n']} | {_fmt(v['tool_name_accuracy'])} | {_fmt(v['tool_args_exact_match'])} |"
                  for c, v in cats.items()]
    if summary.get("confusion"):
        lines += ["", "## Tool confusion (expected -> called)", ""] + [f"- {k}: {v}" for k, v in summary["confusion"].items()]
    diag = summary.get("diagnostics") or {}
    if diag:
        lines += ["", "## Diagnostics", "", "```json", json.dumps(diag, indent=2), "```"]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths = [folder / "report.json", folder / "report.md"]
    if cats:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        names = list(cats)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [cats[c]["tool_name_accuracy"] or 0 for c in names], 0.4, label="tool names")
        ax.bar([x + 0.2 for x in xs], [cats[c]["tool_args_exact_match"] or 0 for c in names], 0.4,
               label="exact arguments")
        ax.set_xticks(list(xs), names)
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(folder / "by_category.png", dpi=100)
        plt.close(fig)
        paths.append(folder / "by_category.png")
    return paths


def update_model_card(run: Path, summary: dict[str, Any], data: list[str]) -> None:
    """Replace (or add) the '## Evaluation' section of RUN/README.md."""
    card = run / "README.md"
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    head = text.split("\n## Evaluation\n", 1)[0].rstrip("\n")
    section = ["", "## Evaluation", "", f"On {', '.join(data)} ({summary.get('n', 0)} examples):", "",
               *headline_table(summary), ""]
    card.write_text(head + "\n" + "\n".join(section), encoding="utf-8")
