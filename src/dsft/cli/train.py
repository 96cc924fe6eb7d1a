"""`dsft train` and `dsft eval`: flags wired to dsft.train and dsft.eval."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)
PLAIN_EVERY_S = 10.0  # seconds between progress lines when stderr is not a terminal


def train(config: Path | None = typer.Argument(None, help="YAML config; flags override it."),
          model: str | None = typer.Option(None, "--model", help="Base model folder or id."),
          train_files: list[str] | None = typer.Option(None, "--train", help="Training data, any layout."),
          validation: list[str] | None = typer.Option(None, "--validation", help="Held-out data."),
          out: str | None = typer.Option(None, "--out", help="Run folder to create."),
          method: str | None = typer.Option(None, "--method",
                                               help="lora, dora, qlora, ia3, prefix or full (default: the model's preset)."),
          preset: str | None = typer.Option(None, "--preset",
                                               help="Rank preset (guide 3.1.3): simple, domain, tool-use, full-capability."),
          epochs: float | None = typer.Option(None, "--epochs"),
          lr: float | None = typer.Option(None, "--lr"),
          batch_size: int | None = typer.Option(None, "--batch-size"),
          max_length: int | None = typer.Option(None, "--max-length"),
          seed: int | None = typer.Option(None, "--seed"),
          save_every: int | None = typer.Option(None, "--save-every", help="Checkpoint every N steps."),
          time_budget: str | None = typer.Option(None, "--time-budget",
                                                    help="Train for this long, evaluations included (90s, 10m, 1h): "
                                                         "the step count is fitted to it; --epochs becomes the most. "
                                                         "'none' trains the epochs whatever they take."),
          copy_augment: float | None = typer.Option(None, "--copy-augment",
                                                       help="Variants per tool-use row with argument values "
                                                            "resampled in the same shape (0 = off)."),
          chat_family: str | None = typer.Option(None, "--chat-family",
                                                    help="The chat format to train in: a DeepSeek one, or chatml (default: told from the model)."),
          thinking: bool | None = typer.Option(None, "--thinking/--no-thinking",
                                                  help="Thinking mode for V3.1, V3.2 and V4."),
          resume: Path | None = typer.Option(None, "--resume", help="Continue this run folder from its last checkpoint."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Start over in --out, deleting the earlier run there.")) -> None:
    """Train an adapter (or a full finetune) from flags alone or a config file."""
    from dsft.eval.during_training import ToolAccuracy
    from dsft.train import config as cfgmod
    from dsft.train.schedule import parse_duration
    from dsft.train.trainer import train as run

    no_budget = time_budget is not None and time_budget.strip().lower() in ("none", "off")
    flags = {"model.name_or_path": model, "data.train": train_files, "data.validation": validation,
             "output.dir": out, "method": method, "training.epochs": epochs, "training.learning_rate": lr,
             "training.batch_size": batch_size, "data.max_length": max_length, "training.seed": seed,
             "rank_preset": preset, "training.save_every": save_every, "data.copy_augment": copy_augment,
             "chat.family": chat_family, "chat.thinking": thinking,
             "training.time_budget": None if time_budget is None or no_budget else parse_duration(time_budget)}
    flags = {k: v for k, v in flags.items() if v not in (None, [])}
    if no_budget:
        flags["training.time_budget"] = None  # explicit: beats the tiny preset's budget
    if resume is not None:
        from dsft.errors import UserError

        if config is not None or flags or overwrite:
            raise UserError("--resume continues a run exactly as configured", "pass only --resume RUN")
        if not (resume / "config.yaml").is_file():
            raise UserError(f"{resume} is not a dsft run folder (no config.yaml)", "give the --out of an earlier run")
        config = resume / "config.yaml"
    cfg = cfgmod.load(config, flags)
    if resume is None and cfg.preset_report:
        console.print(f"preset: {cfg.preset_report}", highlight=False)
    for warning in cfg.preset_warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    budget = f", time budget {cfg.training.time_budget:g}s" if cfg.training.time_budget else ""
    console.print(f"training {cfg.model.name_or_path} ({cfg.method}, up to {cfg.training.epochs:g} epochs{budget}, "
                  f"lr {cfg.training.learning_rate:g}) -> {cfg.output.dir}", highlight=False)

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
    task = bar.add_task("train", total=None, status="loading")

    plain = not console.is_terminal  # redirected to a file or a pipe: a line now and then, not a bar at the end
    printed = [0.0]

    def progress(step: int, total: int, line: dict) -> None:
        extra = f" eval {line['eval_loss']:.3f}" if line.get("eval_loss") is not None else ""
        if line.get("eval_tool_args_exact_match") is not None:
            extra += f" exact args {line['eval_tool_args_exact_match']:.2f}"
        status = f"loss {line['loss']:.3f}{extra} {line['tokens_per_s']:.0f} tok/s"
        bar.update(task, completed=step, total=total, status=status)
        if plain and (time.monotonic() - printed[0] >= PLAIN_EVERY_S or step == total or extra):
            printed[0] = time.monotonic()
            console.print(f"step {step}/{total} {status}", highlight=False, soft_wrap=True)

    from dsft.train.trainer import Interrupted

    with (contextlib.nullcontext() if plain else bar), stop_on_signals() as stop:
        try:
            result = run(cfg, progress, resume=resume is not None, stop=stop, overwrite=overwrite,
                         say=lambda note: console.print(f"[yellow]warning:[/] {note}", highlight=False),
                         callbacks=[ToolAccuracy()])
        except Interrupted as e:
            bar.stop()
            console.print(f"stopped at step {e.step}: checkpoint {e.checkpoint}; continue with "
                          f"`dsft train --resume {cfg.output.dir}`", highlight=False)
            raise typer.Exit(130) from None
    if not result.is_main:
        return
    if result.already_finished:
        console.print(f"{cfg.output.dir} is finished: {result.steps} steps in {result.seconds:.0f}s, train loss "
                      f"{result.train_loss:.3f}; nothing to resume (train further with a new --out and "
                      f"model.init_from: {cfg.output.dir})", highlight=False)
        return
    console.print(f"done in {result.seconds:.0f}s: {result.steps} steps, train loss {result.train_loss:.3f}, "
                  f"eval loss {result.eval_loss if result.eval_loss is None else round(result.eval_loss, 3)}, "
                  f"pad fraction {result.pad_fraction:.2%}, {result.tokens_per_s:.0f} tokens/s -> {result.dir}")


@contextlib.contextmanager
def stop_on_signals():
    """Ctrl-C (SIGINT) or SIGTERM asks the run to stop after the current step, with a checkpoint
    saved; a second Ctrl-C stops at once (KeyboardInterrupt) for a user who cannot wait."""
    asked: list[int] = []
    previous = {}

    def handler(signum, frame):
        if asked and signum == signal.SIGINT:
            raise KeyboardInterrupt
        asked.append(signum)
        console.print("[yellow]stopping after this step (a checkpoint is saved); Ctrl-C again to stop now[/]")

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (a test calling the CLI in-process): no handlers
            pass
    try:
        yield lambda: bool(asked)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def estimate(model: str = typer.Option(..., "--model", help="Model folder or id (only its config is read)."),
             method: str = typer.Option("qlora", "--method", help="lora, qlora or full."),
             seq_len: int = typer.Option(4096, "--seq-len"),
             batch: int = typer.Option(4, "--batch"),
             rank: int = typer.Option(16, "--rank"),
             checkpointing: bool = typer.Option(True, "--checkpointing/--no-checkpointing"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Training memory estimate from the model's config, as the guide's table (section 3.2.3)."""
    from rich.table import Table

    from dsft.errors import UserError
    from dsft.train.estimate import GB
    from dsft.train.estimate import estimate as run

    if method not in ("lora", "qlora", "full"):
        raise UserError(f"--method {method!r} cannot be estimated", "use lora, qlora or full")
    est = run(model, method, seq_len, batch, rank, checkpointing)
    if as_json:
        sys.stdout.write(json.dumps({"model": model, "method": method, "params": est.params,
                                     "trainable": est.trainable, "total_gb": round(est.total / GB, 2),
                                     "components_gb": {k: round(v / GB, 3) for k, v in est.rows.items()},
                                     "notes": est.notes}) + "\n")
        return
    table = Table(title=f"{model}: {method}, seq {seq_len}, batch {batch}"
                        + (f", rank {rank}" if method != "full" else ""))
    table.add_column("component")
    table.add_column("GB", justify="right")
    for k, v in est.rows.items():
        table.add_row(k, f"{v / GB:.2f}")
    table.add_row("[bold]total[/]", f"[bold]{est.total / GB:.2f}[/]")
    out = Console()
    out.print(f"{est.params / 1e9:.3f}B parameters, {est.trainable / 1e6:.2f}M trainable")
    out.print(table)
    for note in est.notes:
        out.print(f"note: {note}")


def export_script(run: Path = typer.Argument(..., help="Run folder from `dsft train`."),
                  out: Path = typer.Option(None, "--out", help="Folder for train.py + requirements.txt (default RUN/script).")) -> None:
    """A standalone training script and requirements.txt equivalent to the run's config (guide phase 2)."""
    from dsft.train.export_script import export

    for path in export(run, out or run / "script"):
        console.print(f"wrote {path}")
