"""`dsft model ...`: build the embedded default model, import a GGUF one."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from dsft.errors import UserError

app = typer.Typer(help="Build and inspect models.", no_args_is_help=True)
console = Console()


@app.command()
def tiny(out: Path = typer.Option(None, "--out", help="Folder to write (default: DSFT_HOME/models/tiny-ARCH)."),
         arch: str = typer.Option("deepseek_v3", "--arch", help="deepseek_v3 (MLA + MoE), deepseek_v2 (V2-Lite's MLA + MoE), llama or qwen2."),
         seed: int = typer.Option(0, "--seed"),
         corpus: list[Path] | None = typer.Option(None, "--corpus",
                                                     help="Fit the tokenizer to these training files (any layout "
                                                          "dsft reads) instead of cutting it from DeepSeek's vocabulary."),
         vocab_size: int = typer.Option(8192, "--vocab-size", min=600, max=131072),
         tied: bool = typer.Option(True, "--tied/--untied",
                                   help="Share the input embedding with the output layer (lets it copy unseen values)."),
         family: str = typer.Option("deepseek_v3", "--family",
                                    help="The DeepSeek chat format it speaks (docs/formats.md)."),
         random_init: bool = typer.Option(False, "--random-init",
                                          help="Leave out the copy circuit (deepseek_v3 only): plain random weights."),
         pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained",
                                         help="Start from the weights dsft ships, pretrained on generic tool use "
                                              "(default sizes, tokenizer and format only); --no-pretrained: the "
                                              "copy circuit alone."),
         force: bool = typer.Option(False, "--force", help="Replace --out if it exists.")) -> None:
    """A tiny model of the real architecture and a DeepSeek tokenizer, built here (no hub): DeepSeek-V3 pretrained on generic tool use, or random init."""
    from dsft.chat.families import get
    from dsft.home import dsft_home
    from dsft.model import warm_start
    from dsft.model.tiny import ARCHS, TinySpec, build

    if arch not in ARCHS:
        raise UserError(f"--arch {arch!r} is unknown", f"use one of: {', '.join(ARCHS)}")
    get(family)  # an unknown family is a UserError listing them, before anything is written
    out = out or dsft_home() / "models" / f"tiny-{arch}"
    spec = TinySpec(arch=arch, seed=seed, vocab_size=vocab_size, corpus=tuple(str(f) for f in corpus or ()), tied=tied,
                    family=family, copy_circuit=not random_init, pretrained=pretrained)
    unfit = warm_start.unfit(spec)  # why this build cannot start from the shipped weights, if it cannot
    if out.exists() and any(out.iterdir()) and not force:
        built = _built(out)
        wanted = {"arch": arch, "seed": seed, "family": family, "tokenizer": "corpus" if corpus else "deepseek-merges",
                  "copy_circuit": arch == "deepseek_v3" and not random_init, "tied": tied}
        wanted["pretrained"] = pretrained and unfit is None  # what a build now would start from
        if built is not None and not corpus and vocab_size == 8192 and \
                {k: built.get(k, False) for k in wanted} == wanted:
            console.print(f"already built: {out} ({arch}, seed {seed}, {family} format); use it as "
                          f"`--model {out}` (--force rebuilds it)", highlight=False)
            return
        what = "a tiny model built with other options" if built is not None else "files that are not a tiny model"
        raise UserError(f"{out} already holds {what}", f"pass --force to rebuild it, or choose another --out; "
                        f"to reuse it, give `--model {out}` to the next command")
    for f in corpus or ():
        if not f.exists():
            raise UserError(f"--corpus {f} does not exist", "give the training files to fit the tokenizer to")
    path = build(out, spec)
    tokenizer = "fitted to " + ", ".join(map(str, corpus)) if corpus else "cut from DeepSeek's vocabulary"
    recorded = json.loads((path / "config.json").read_text())["dsft_tiny"]
    start = ("pretrained on generic tool use" if recorded.get("pretrained") else
             "copy circuit" if recorded["copy_circuit"] else "random init")
    console.print(f"tiny {arch} model (seed {seed}, {start}, {vocab_size} tokens, {tokenizer}, {family} format) -> {path}")
    if pretrained and recorded["copy_circuit"] and not recorded.get("pretrained"):
        console.print(f"note: not the pretrained start ({unfit or 'the shipped weights do not fit this build'}; "
                      "they fit the default tokenizer and DeepSeek-V3 format only): it learns tool use from your "
                      "data alone, so train longer")


@app.command("import")
def import_(file: Path = typer.Argument(..., help="A .gguf file (byte-level BPE tokenizer: llama, qwen2, ...)."),
            out: Path = typer.Option(..., "--out", help="Folder to write the HF model to."),
            dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16 (half the disk and memory)."),
            force: bool = typer.Option(False, "--force", help="Replace --out if it exists.")) -> None:
    """Dequantize a GGUF model into a plain HF folder (safetensors, tokenizer, chat template) to train from."""
    from dsft.model.import_gguf import import_gguf

    record = import_gguf(file, out, dtype, force)
    console.print(f"{record['architecture']} model {record.get('name') or file.stem} "
                  f"({record['parameters'] / 1e6:.0f}M parameters, {dtype}, from {', '.join(record['types'])}; "
                  f"pre-tokenizer {record['pre']}) -> {out}", highlight=False)
    if record.get("note"):
        console.print(f"note: {record['note']}", highlight=False)


def _built(folder: Path) -> dict | None:
    """What `dsft model tiny` recorded in `folder`'s config, or None if it holds no tiny model."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if "dsft_tiny" not in config:
        return None
    return {**config["dsft_tiny"], "tied": bool(config.get("tie_word_embeddings"))}
