"""`dsft eval`: score a model (generating) or outputs made elsewhere (`dsft eval score`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dsft.errors import UserError

app = typer.Typer(help="Evaluate models and outputs with the same metrics.", invoke_without_command=True)


def _print(summary: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        Console().print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in summary.items() if isinstance(v, int | float)))


@app.callback()
def evaluate(ctx: typer.Context,
             model: Optional[str] = typer.Option(None, "--model", help="Run folder or model folder."),
             endpoint: Optional[str] = typer.Option(None, "--endpoint", help="OpenAI-compatible server URL instead of --model."),
             data: Optional[list[str]] = typer.Option(None, "--data", help="Evaluation data, any layout."),
             limit: Optional[int] = typer.Option(None, "--limit"),
             max_new_tokens: int = typer.Option(96, "--max-new-tokens"),
             batch_size: int = typer.Option(8, "--batch-size", help="Prompts generated together."),
             seed: int = typer.Option(0, "--seed"),
             samples: int = typer.Option(1, "--samples", help="Samples per code example for pass@k (1 = greedy pass@1)."),
             temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature for --samples."),
             reference_data: Optional[list[str]] = typer.Option(
                 None, "--reference-data", help="General data: perplexity before (base) and after (forgetting)."),
             report: Optional[Path] = typer.Option(None, "--report", help="Write report.json, report.md and a chart here."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Generate the next assistant turn of each example (greedy, shared renderer) and score it."""
    if ctx.invoked_subcommand:
        return
    if not (model or endpoint) or not data:
        raise UserError("dsft eval needs --model (or --endpoint) and --data",
                        "e.g. dsft eval --model RUN --data held_out.jsonl")
    if endpoint:
        from dsft.eval.endpoint import evaluate_endpoint
        from dsft.train.trainer import load_conversations

        scored = evaluate_endpoint(endpoint, load_conversations(data)[0], max_new_tokens=max_new_tokens, limit=limit)
        _print(scored.summary(), as_json)
        return
    import torch

    from dsft.eval.tooluse import evaluate as run
    from dsft.eval.tooluse import load_for_eval
    from dsft.train.trainer import load_conversations

    torch.manual_seed(seed)
    convs, _ = load_conversations(data)
    net, tokenizer = load_for_eval(model)
    summary = run(net, tokenizer, convs, max_new_tokens=max_new_tokens, limit=limit, batch_size=batch_size,
                  samples=samples, temperature=temperature).summary()
    from dsft.eval.diagnostics import fit_verdict

    verdict = fit_verdict(Path(model))
    if verdict is not None:
        summary["diagnostics"]["fit"] = verdict
    if reference_data:
        summary["forgetting"] = _forgetting(model, net, tokenizer, reference_data, batch_size)
    if report is not None:
        from dsft.eval.report import update_model_card, write_report

        write_report(report, summary, model)
        update_model_card(Path(model), summary, data)
    _print(summary, as_json)


def _forgetting(model: str, net, tokenizer, reference_data: list[str], batch_size: int) -> dict:
    """Perplexity on general data under the base model and under this one (the guide's catastrophic
    forgetting row): a rise means the finetune cost general ability."""
    from dsft.eval.tooluse import base_of, load_for_eval, perplexity
    from dsft.train.trainer import load_conversations

    convs, _ = load_conversations(reference_data)
    after = perplexity(net, tokenizer, convs, batch_size)
    base = base_of(model)
    before = perplexity(*load_for_eval(base), convs, batch_size) if base else None
    change = None if before is None or after is None else after / before - 1
    return {"base": base, "perplexity_before": before, "perplexity_after": after, "relative_change": change}


@app.command()
def score(predictions: Path = typer.Argument(..., help="JSONL: one assistant message (OpenAI format), "
                                                       "chat completion or {\"text\": ...} per reference."),
          references: list[str] = typer.Argument(..., help="Reference data, any layout."),
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Score generations made elsewhere with exactly the metrics of `dsft eval`, no model loaded."""
    from dsft.eval.score import score_file

    _print(score_file(predictions, references), as_json)


@app.command("compare")
def compare_cmd(a: str = typer.Argument(..., help="Model A (e.g. the base or the champion)."),
                b: str = typer.Argument(..., help="Model B (e.g. the new run)."),
                data: list[str] = typer.Option(..., "--data", help="Evaluation data, any layout."),
                limit: Optional[int] = typer.Option(None, "--limit"),
                max_new_tokens: int = typer.Option(96, "--max-new-tokens"),
                show: int = typer.Option(3, "--show", help="Regressed/improved examples to print."),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Both models on the same examples: metrics, deltas, paired bootstrap intervals, regressions."""
    from dsft.eval.compare import run_compare

    result = run_compare(a, b, data, limit=limit, max_new_tokens=max_new_tokens)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        print_comparison(result, ("A", "B"), show)


def print_comparison(result, labels: tuple[str, str], show: int = 3, console: Console | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    table = Table()
    for col in ("metric", labels[0], labels[1], "delta", "95% CI of delta"):
        table.add_column(col, justify="left" if col == "metric" else "right")

    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    for key, row in result.metrics.items():
        ci = row.get("ci95")
        table.add_row(key, fmt(row[labels[0]]), fmt(row[labels[1]]),
                      "n/a" if row["delta"] is None else f"{row['delta']:+.3f}",
                      f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
    console.print(table)
    console.print(f"{len(result.improved)} examples improved, {len(result.regressed)} regressed "
                  f"(exact arguments, {labels[0]} -> {labels[1]})")
    for entry in result.regressed[:show]:
        console.print(f"[red]regressed[/] #{entry['example']}: {escape(labels[0])}: {escape(entry[labels[0]][:160])!r}\n"
                      f"  {escape(labels[1])}: {escape(entry[labels[1]][:160])!r}", highlight=False)
