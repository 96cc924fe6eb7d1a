"""`dsft eval`: score a model (generating) or outputs made elsewhere (`dsft eval score`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from dsft.errors import UserError

app = typer.Typer(help="Evaluate models and outputs with the same metrics.", invoke_without_command=True)


def _print(summary: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    console = Console()
    console.print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in summary.items() if isinstance(v, int | float)))
    fit = (summary.get("diagnostics") or {}).get("fit")
    if fit:
        from rich.markup import escape

        console.print(escape(fit_line(fit)), highlight=False)


def fit_line(fit: dict) -> str:
    """`fit: underfitting: WHY; try: A; B`, the verdict as `dsft eval` prints it."""
    tries = fit.get("suggest") or []
    return f"fit: {fit['verdict']}: {fit['why']}" + (f"; try: {'; '.join(tries)}" if tries else "")


@app.callback()
def evaluate(ctx: typer.Context,
             model: str | None = typer.Option(None, "--model", help="Run folder or model folder."),
             endpoint: str | None = typer.Option(None, "--endpoint", help="OpenAI-compatible server URL instead of --model."),
             served_model: str | None = typer.Option(None, "--served-model",
                                                        help="With --endpoint: the model name to request "
                                                             "(default: the server's only model)."),
             data: list[str] | None = typer.Option(None, "--data", help="Evaluation data, any layout."),
             limit: int | None = typer.Option(None, "--limit"),
             max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Default: room for the longest reference turn."),
             batch_size: int = typer.Option(32, "--batch-size", help="Prompts generated together (decoding costs a step per token whatever the batch)."),
             seed: int = typer.Option(0, "--seed"),
             samples: int = typer.Option(1, "--samples", help="Samples per code example for pass@k (1 = greedy pass@1)."),
             temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature for --samples."),
             reference_data: list[str] | None = typer.Option(
                 None, "--reference-data", help="General data: perplexity before (base) and after (forgetting)."),
             report: Path | None = typer.Option(None, "--report", help="Write report.json, report.md and a chart here."),
             constrain: bool = typer.Option(True, "--constrain/--no-constrain",
                                            help="Decode tool calls under the tools' grammar, as dsft serve does "
                                                 "(declared names, schema-valid arguments)."),
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

        scored = evaluate_endpoint(endpoint, load_conversations(data)[0], served_model, max_new_tokens=max_new_tokens,
                                   limit=limit)
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
                  samples=samples, temperature=temperature, constrain=constrain).summary()
    from dsft.eval.diagnostics import fit_verdict

    verdict = fit_verdict(Path(model), summary=summary)  # the curves and the task metric just measured
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
                limit: int | None = typer.Option(None, "--limit"),
                max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Default: room for the longest reference turn."),
                show: int = typer.Option(3, "--show", help="Regressed examples to print per metric."),
                label_a: str | None = typer.Option(None, "--label-a", help="Name of A (default: base or run, "
                                                                              "from what the folder is)."),
                label_b: str | None = typer.Option(None, "--label-b", help="Name of B (default: as for A)."),
                as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Both models on the same examples: metrics, deltas, paired bootstrap intervals, and per metric
    (tool names, exact arguments, irrelevance) the examples that improved and regressed."""
    from dsft.eval.compare import default_labels, run_compare

    labels = default_labels(a, b)
    labels = (label_a or labels[0], label_b or labels[1])
    if labels[0] == labels[1]:
        raise UserError(f"A and B are both labelled {labels[0]!r}", "give --label-a and --label-b distinct names")
    result = run_compare(a, b, data, limit=limit, max_new_tokens=max_new_tokens, labels=labels)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        print_comparison(result, labels, show)


def header(result) -> str | None:
    """`A = base PATH (base model), B = run PATH (trained)`, from `result.sides`; None without sides."""
    sides = getattr(result, "sides", None) or {}
    if not all("path" in v for v in sides.values()) or len(sides) != 2:
        return None
    ordered = sorted(sides.items(), key=lambda kv: kv[1]["side"])
    return ", ".join(f"{v['side']} = {label} {v['path']} ({v['kind']})" for label, v in ordered)


def summary_lines(result, labels: tuple[str, str]) -> list[str]:
    """One line per metric: `tool names (58 rows with a call): 57 improved, 1 regressed (base -> run; right 1 -> 57)`.
    A result without `per_metric` (an older job's) gets the old single line, for exact arguments."""
    per_metric = getattr(result, "per_metric", None)
    if not per_metric:
        return [f"{len(result.improved)} examples improved, {len(result.regressed)} regressed "
                f"(exact arguments, {labels[0]} -> {labels[1]})"]
    lines = []
    for block in per_metric.values():
        rows = f"{block['n']} rows with a call" if block["rows"] == "call" else f"{block['n']} no-call rows"
        if not block["n"]:
            lines.append(f"{block['name']}: no {rows[2:]}")
            continue
        right = block.get("right") or {}
        tail = f"; right {right[labels[0]]} -> {right[labels[1]]}" if set(labels) <= set(right) else ""
        lines.append(f"{block['name']} ({rows}): {block['n_improved']} improved, {block['n_regressed']} regressed "
                     f"({labels[0]} -> {labels[1]}{tail})")
    return lines


def print_comparison(result, labels: tuple[str, str], show: int = 3, console: Console | None = None) -> None:
    """The table, a header saying which side is which, the per-metric counts and up to `show`
    regressed examples per metric (an example regressed on several metrics is printed once)."""
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    head = header(result)
    if head:
        console.print(escape(head), highlight=False)
    per_metric = getattr(result, "per_metric", None)
    caption = None
    if per_metric and "tool_name_accuracy" in per_metric and "irrelevance_accuracy" in per_metric:
        calls, no_calls = per_metric["tool_name_accuracy"]["n"], per_metric["irrelevance_accuracy"]["n"]
        caption = (f"means over all {calls + no_calls} rows ({calls} with a call, {no_calls} without)"
                   + (f"; irrelevance_accuracy over the {no_calls} without" if no_calls else ""))
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
    if caption:
        console.print(escape(caption), highlight=False)
    for line in summary_lines(result, labels):
        console.print(escape(line), highlight=False)
    shown: dict[int, tuple[dict, list[str]]] = {}
    if per_metric:
        for block in per_metric.values():
            for entry in block["regressed"][:show]:
                shown.setdefault(entry["example"], (entry, []))[1].append(block["name"])
    else:
        for entry in [e for e in result.regressed if e is not None][:show]:
            shown[entry["example"]] = (entry, [])
    for k in sorted(shown):
        entry, names = shown[k]
        on = f" ({', '.join(names)})" if names else ""
        a, b = (escape(repr(entry[label][:160])) for label in labels)
        console.print(f"[red]regressed[/] #{k}{escape(on)}: {escape(labels[0])}: {a}\n  {escape(labels[1])}: {b}",
                      highlight=False)
