"""`dsft data ...`: validate, prepare, generate and collect training data."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsft.data.checks import Limits
from dsft.data.codes import InputError
from dsft.data.layouts import LAYOUTS, load_tools
from dsft.data.pipeline import Options
from dsft.data.quality import SCORERS
from dsft.errors import UserError

app = typer.Typer(help="Validate, prepare, generate and collect training data.", no_args_is_help=True)
console = Console()

Inputs = typer.Argument(..., help="Files or folders: .jsonl/.json/.csv/.tsv/.parquet, any layout.")
FormatOpt = typer.Option(None, "--format", help=f"Force a layout instead of detecting it: {', '.join(LAYOUTS)}.")
ToolsOpt = typer.Option(None, "--tools", help="JSON file of tool declarations attached to examples that have none.")
TokenizerOpt = typer.Option(None, "--tokenizer", help="Tokenizer (path or id) for exact token counts.")
MinTokOpt = typer.Option(8, "--min-tokens", help="Warn (too_short) below this many tokens.")
MaxTokOpt = typer.Option(4096, "--max-tokens", help="Warn (too_long) above this many tokens.")


def _options(fmt: str | None, tools: Path | None, tokenizer: str | None, min_tokens: int, max_tokens: int,
             **extra) -> Options:
    if fmt is not None and fmt not in LAYOUTS:
        raise UserError(f"--format {fmt!r} is not a layout", f"use one of: {', '.join(LAYOUTS)}")
    counter = None
    if tokenizer:
        from dsft.data.tokens import tokenizer_counter

        counter = tokenizer_counter(tokenizer)
    return Options(format=fmt, tools=load_tools(tools) if tools else None, token_counter=counter,
                   limits=Limits(min_tokens, max_tokens), **extra)


@app.command()
def validate(
    inputs: list[Path] = Inputs,
    fmt: str | None = FormatOpt,
    tools: Path | None = ToolsOpt,
    tokenizer: str | None = TokenizerOpt,
    min_tokens: int = MinTokOpt,
    max_tokens: int = MaxTokOpt,
    as_json: bool = typer.Option(False, "--json", help="Print every finding as JSON."),
) -> None:
    """Check every record; exit 0 when no row has errors, 1 when some do, 2 when an input cannot be read."""
    from dsft.data.sources import prepared_examples
    from dsft.data.validate import validate as run

    for path in inputs:
        kept = prepared_examples(path) if path.is_dir() else None
        if kept is not None and not as_json:
            console.print(f"{path} is a prepared dataset: reading {' and '.join(p.name for p in kept) or 'nothing'} "
                          "(rejects.jsonl and duplicates.jsonl hold what `data prepare` set aside)", highlight=False)
    try:
        result = run(inputs, _options(fmt, tools, tokenizer, min_tokens, max_tokens))
    except InputError as e:
        if not as_json:
            raise
        sys.stdout.write(orjson.dumps({"ok": False, "exit_code": 2,
                                       "findings": [f.to_dict() for f in e.findings]}).decode() + "\n")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        t = result.tally
        usable = t.read - t.rejected
        once = f" ({usable - t.duplicates} once the {t.duplicates} duplicates are dropped, as `data prepare` does)" \
            if t.duplicates else ""
        console.print(f"[bold]{t.read}[/] records read: [green]{usable} usable[/]{once}, "
                      f"[red]{t.rejected} with errors[/]; {t.errors} errors, {t.warnings} warnings")
        print_findings(result.tally.findings_summary())
    raise typer.Exit(result.exit_code)


def print_findings(summary: dict) -> None:
    if not summary:
        console.print("[green]No findings.[/]")
        return
    table = Table(show_lines=False)
    for col in ("code", "tier", "count", "first rows: what is wrong", "fix"):
        table.add_column(col, overflow="fold")
    for code, f in summary.items():
        tier = "[red]error[/]" if f["severity"] == "error" else "[yellow]warning[/]"
        rows = [f"{where}: {said}" for where, said in zip(f["first"], f.get("said") or [""] * len(f["first"]))]
        table.add_row(code, tier, str(f["count"]), escape("\n".join(rows)), f["fix"])
    console.print(table)


@app.command()
def prepare(
    inputs: list[Path] = Inputs,
    out: Path = typer.Option(..., "--out", help="Dataset folder to create."),
    fmt: str | None = FormatOpt,
    tools: Path | None = ToolsOpt,
    tokenizer: str | None = TokenizerOpt,
    min_tokens: int = MinTokOpt,
    max_tokens: int = MaxTokOpt,
    val_ratio: float = typer.Option(0.1, "--val-ratio", help="Share of rows held out for validation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    scorer: str = typer.Option("dsft", "--scorer", help=f"Quality scorer for --min-quality: {', '.join(SCORERS)}."),
    min_quality: float | None = typer.Option(None, "--min-quality", help="Reject rows scoring below this (0-100)."),
    near_dup: float | None = typer.Option(None, "--near-dup", help="Also drop near-duplicates at this Jaccard similarity (e.g. 0.85)."),
    token_stats: bool = typer.Option(True, "--token-stats/--no-token-stats", help="Report token-length statistics."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Read, validate, score, deduplicate and split into a dataset folder; nothing is lost."""
    from dsft.data.prepare import prepare as run

    if scorer not in SCORERS:
        raise UserError(f"--scorer {scorer!r} is unknown", f"use one of: {', '.join(SCORERS)}")
    if near_dup is not None and not 0 < near_dup <= 1:
        raise UserError(f"--near-dup {near_dup} is outside (0, 1]", "use a Jaccard similarity such as 0.85")
    options = _options(fmt, tools, tokenizer, min_tokens, max_tokens, scorer=scorer, min_quality=min_quality,
                       near_dup=near_dup)
    result = run(inputs, out, options, val_ratio=val_ratio, seed=seed, force=force, token_stats=token_stats,
                 tokenizer_name=tokenizer)
    if as_json:
        sys.stdout.write(orjson.dumps(result.report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_report(result.report, result.out)


def print_report(report: dict, out: Path) -> None:
    c = report["counts"]
    console.print(f"[bold]dataset[/] {report['dataset_id']}  ->  {out}")
    console.print(f"read {c['read']}: [green]train {c['train']}[/], [cyan]validation {c['validation']}[/], "
                  f"[red]rejected {c['rejected']}[/], duplicates {c['duplicates']} "
                  f"({'adds up' if c['balanced'] else 'DOES NOT ADD UP'})")
    if report["layouts"]:
        console.print("layouts: " + ", ".join(f"{k} {v}" for k, v in report["layouts"].items()))
    tasks = report["task_types"]
    if tasks:
        console.print("task types: " + ", ".join(f"{k} {v['train']}/{v['validation']}" for k, v in list(tasks.items())[:8]))
    t = report["tokens"]
    if t.get("count"):
        console.print(f"tokens p5/p50/p95/max: {t['p5']}/{t['p50']}/{t['p95']}/{t['max']} ({t['method']})")
    q = report["quality"]
    console.print("quality (approx mean): " + ", ".join(f"{k} {v['approx_mean']}" for k, v in q.items()))
    print_findings(report["findings"])
    console.print(f"report: {out / 'report.md'}")


@app.command()
def generate(
    tools: Path = typer.Option(None, "--tools", help="Tool declarations (JSON). Default: the built-in LightDom tools."),
    scenarios: Path = typer.Option(None, "--scenarios", help="Scenarios (YAML). Default: the built-in LightDom scenarios."),
    n: int = typer.Option(200, "-n", help="Number of examples."),
    out: Path = typer.Option(Path("-"), "--out", help="Output JSON Lines file ('-' for stdout)."),
    seed: int = typer.Option(0, "--seed"),
    error_ratio: float = typer.Option(0.15, "--error-ratio", help="Share of error-recovery examples."),
    ood_ratio: float = typer.Option(0.1, "--ood-ratio", help="Share of out-of-domain requests answered without a tool."),
) -> None:
    """Generate tool-use conversations from tool schemas and slot-filled scenarios (guide 6.4)."""
    from dsft.data.generate import generate as run
    from dsft.data.generate import load_scenarios

    tool_specs = load_tools(tools) if tools else None
    examples = run(load_scenarios(scenarios), n, seed=seed, tools=tool_specs, error_ratio=error_ratio,
                   ood_ratio=ood_ratio)
    _write_jsonl(examples, out)


@app.command()
def collect(
    components: Path | None = typer.Option(None, "--components", help="Folder of code components."),
    style_guide: list[Path] | None = typer.Option(None, "--style-guide", help="Markdown style guide(s)."),
    html: list[str] | None = typer.Option(None, "--html", help="HTML files or http(s) URLs."),
    out: Path = typer.Option(Path("-"), "--out", help="Output JSON Lines file ('-' for stdout)."),
    timeout: float = typer.Option(20.0, "--timeout", help="Seconds per URL."),
) -> None:
    """Turn components, style guides and web pages into training conversations (guide 7.2)."""
    from dsft.data import collect as col

    if not (components or style_guide or html):
        raise UserError("nothing to collect", "give --components, --style-guide and/or --html")
    result = col.collect(components=components, style_guides=style_guide or [], html=html or [], timeout=timeout)
    for problem in result.problems:
        Console(stderr=True).print(f"[yellow]skipped[/] {problem}", highlight=False)
    _write_jsonl(result.examples, out)
    Console(stderr=True).print(f"collected {len(result.examples)} examples; {len(result.problems)} sources skipped")


def _write_jsonl(rows: list[dict], out: Path) -> None:
    blob = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    if str(out) == "-":
        sys.stdout.buffer.write(blob)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)
        Console(stderr=True).print(f"wrote {len(rows)} examples to {out}")
