"""The `dsft` command. Each subcommand group lives in its own module and only wires flags to
library functions; user errors become a message, a fix and an exit code, never a traceback."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from dsft import __version__
from dsft.data.codes import InputError
from dsft.errors import UserError

app = typer.Typer(name="dsft", help="Local finetuning for DeepSeek models: data, training, evaluation, serving.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """Local finetuning for DeepSeek models: data, training, evaluation, serving."""


def _register() -> None:
    from dsft.cli import chat, data, demo, evaluate, model, platform, train

    app.add_typer(data.app, name="data")
    app.add_typer(model.app, name="model")
    app.add_typer(chat.app, name="chat")
    app.command("train")(train.train)
    app.add_typer(evaluate.app, name="eval")
    app.command("estimate")(train.estimate)
    app.command("export-script")(train.export_script)
    app.command("demo")(demo.demo)
    app.command("api")(platform.api)
    app.command("worker")(platform.worker)
    app.command("serve")(platform.serve)
    app.command("deploy")(platform.deploy)
    app.command("export")(platform.export)
    app.add_typer(platform.ab_app, name="ab")
    app.add_typer(platform.jobs_app, name="jobs")
    app.add_typer(platform.models_app, name="models")
    app.add_typer(platform.pipeline_app, name="pipeline")


_register()


def main() -> None:
    # dsft draws its own progress; transformers' per-load/save bars only add noise to its output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except UserError as e:
        err_console.print(f"[bold red]error:[/] {escape(e.message)}", highlight=False)
        if e.fix:
            err_console.print(f"  [bold]fix:[/] {escape(e.fix)}", highlight=False)
        sys.exit(e.exit_code)
    except InputError as e:
        for f in e.findings:
            err_console.print(f"[bold red]error[/] {escape(f'[{f.code}]')} {escape(f.where())}: {escape(f.message)}",
                              highlight=False)
            err_console.print(f"  [bold]fix:[/] {escape(f.fix)}", highlight=False)
        sys.exit(2)
