"""`dsft chat ...`: see exactly what a model is trained on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from dsft.errors import UserError

app = typer.Typer(help="Render conversations through a model's chat template.", no_args_is_help=True)
console = Console()


@app.command()
def render(file: Path = typer.Argument(..., help="Data file in any layout dsft reads."),
           model: str = typer.Option(..., "--model", help="Model folder or id whose tokenizer renders."),
           limit: int = typer.Option(1, "--limit", "-n", help="How many examples to show."),
           max_length: int = typer.Option(None, "--max-length", help="Truncate like training would."),
           family: str = typer.Option(None, "--family", help="Render in this DeepSeek format (default: the model's)."),
           thinking: bool = typer.Option(None, "--thinking/--no-thinking", help="Thinking mode (V3.1, V3.2, V4).")) -> None:
    """Show examples exactly as training renders them (dsft's encoder), trained tokens marked «like this»."""
    from dsft.chat.detect import detect, of, record
    from dsft.chat.encoder import Options as RenderOptions
    from dsft.chat.render import RenderError, show
    from dsft.chat.render import render as run
    from dsft.data.pipeline import Options, Scanner
    from dsft.data.sources import discover, read_records
    from dsft.model.load import load_tokenizer

    tokenizer = load_tokenizer(model)
    chosen, opts = of(tokenizer) if family is None else (detect(tokenizer, model, family), RenderOptions())
    if thinking is not None or family is not None:
        think = chosen.thinking_default if thinking is None else thinking
        record(tokenizer, chosen, RenderOptions(thinking=think, reasoning_turns=opts.reasoning_turns))
    console.print(f"format: {chosen.name} ({chosen.generations})", highlight=False)
    shown = 0
    for row in Scanner(Options()).scan(read_records(discover([file]))):
        if shown >= limit:
            break
        where = f"{row.record.file}:{row.record.line}"
        if row.rejected:
            console.print(f"[red]{escape(where)}: rejected[/] ({', '.join(sorted(set(row.codes)))})")
            continue
        try:
            rendered = run(row.conv, tokenizer, max_length)
        except RenderError as e:
            raise UserError(f"{where}: {e}", "raise --max-length or shorten the example") from None
        console.rule(f"{escape(where)}: {len(rendered.ids)} tokens, {rendered.supervised} trained")
        console.print(escape(show(rendered, tokenizer)), highlight=False)
        shown += 1
