"""`dsft model ...`: build the embedded default model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dsft.errors import UserError

app = typer.Typer(help="Build and inspect models.", no_args_is_help=True)
console = Console()


@app.command()
def tiny(out: Path = typer.Option(None, "--out", help="Folder to write (default: DSFT_HOME/models/tiny-ARCH)."),
         arch: str = typer.Option("deepseek_v3", "--arch", help="deepseek_v3 (MLA + MoE), llama or qwen2."),
         seed: int = typer.Option(0, "--seed"),
         force: bool = typer.Option(False, "--force", help="Replace --out if it exists.")) -> None:
    """A tiny random-init model of the real architecture + a locally trained DeepSeek tokenizer (no hub)."""
    from dsft.home import dsft_home
    from dsft.model.tiny import ARCHS, TinySpec, build

    if arch not in ARCHS:
        raise UserError(f"--arch {arch!r} is unknown", f"use one of: {', '.join(ARCHS)}")
    out = out or dsft_home() / "models" / f"tiny-{arch}"
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} already exists", "pass --force to rebuild it, or choose another --out")
    path = build(out, TinySpec(arch=arch, seed=seed))
    console.print(f"tiny {arch} model (seed {seed}) -> {path}")
