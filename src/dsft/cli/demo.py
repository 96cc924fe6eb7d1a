"""`dsft demo`: the main job on the embedded default, end to end as far as dsft goes today.

1. generate LightDom tool-use conversations from the built-in scenarios, add the guide's own
   examples and a mixed-layout sample with deliberately broken rows;
2. prepare a dataset (validate, score, deduplicate, split) and print the report;
3. build the tiny DeepSeek-V3 model if needed, train it with its preset on the train split;
4. score base and trained model on the held-out split through the shared renderer and parser.
Later stages (registry, serving) extend this command as they land.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console

from dsft.data.generate import builtin, generate, load_scenarios
from dsft.data.pipeline import Options
from dsft.data.prepare import prepare
from dsft.home import dsft_home

console = Console()


def demo(n: int = typer.Option(1200, "-n", help="Generated tool-use examples."),
         seed: int = typer.Option(0, "--seed"),
         epochs: float = typer.Option(None, "--epochs", help="Override the tiny preset's epochs."),
         eval_limit: int = typer.Option(120, "--eval-limit", help="Held-out examples scored.")) -> None:
    """Generate data, prepare it, train the tiny model and show base vs trained on held-out data."""
    from dsft.cli.data import print_report
    from dsft.data.layouts import load_tools

    work = dsft_home() / "demo"
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]1. generate")
    examples = generate(load_scenarios(), n, seed=seed)
    (raw / "generated.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in examples))
    kinds: dict[str, int] = {}
    for e in examples:
        kinds[e["metadata"]["kind"]] = kinds.get(e["metadata"]["kind"], 0) + 1
    console.print(f"{len(examples)} tool-use conversations from the built-in LightDom scenarios: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    samples = Path(str(builtin("samples")))
    inputs = [_short(raw / "generated.jsonl"), *sorted(_short(p) for p in samples.iterdir() if p.is_file())]
    console.print("plus the guide's examples and a mixed-layout sample: "
                  + ", ".join(p.name for p in inputs[1:]))
    console.rule("[bold]2. prepare (validate, score, deduplicate, split)")
    tools = load_tools(builtin("lightdom_tools.json"))
    result = prepare(inputs, work / "dataset", Options(tools=tools), seed=seed, force=True)
    print_report(result.report, _short(result.out))
    _train_and_compare(work, result.out, seed, epochs, eval_limit)


def _train_and_compare(work: Path, dataset: Path, seed: int, epochs: float | None, eval_limit: int) -> None:
    import shutil

    from dsft.model.tiny import TinySpec, build
    from dsft.train.config import load
    from dsft.train.trainer import train

    console.rule("[bold]3. train the tiny DeepSeek-V3 model")
    model_dir = dsft_home() / "models" / "tiny-deepseek_v3"
    if not (model_dir / "config.json").exists():
        build(model_dir, TinySpec(seed=seed))
        console.print(f"built the tiny model (MLA + MoE, random init, local BPE tokenizer) -> {_short(model_dir)}")
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = {"model.name_or_path": str(model_dir),
                 "data.train": [str(dataset / "train.jsonl")], "data.validation": [str(dataset / "validation.jsonl")],
                 "output.dir": str(run_dir), "training.seed": seed}
    if epochs is not None:
        overrides["training.epochs"] = epochs
    cfg = load(None, overrides)
    console.print(f"preset for the tiny model: {cfg.method} finetune, lr {cfg.training.learning_rate:g}, "
                  f"{cfg.training.epochs:g} epochs, batch {cfg.training.batch_size} (chosen by measurement, "
                  "see dsft/train/presets.py)")
    result = train(cfg, lambda s, n, line: console.print(
        f"  step {s}/{n} loss {line['loss']:.3f}" + (f" eval {line['eval_loss']:.3f}" if line.get("eval_loss") else ""))
        if s % 500 == 0 or s == n else None)
    console.print(f"trained in {result.seconds:.0f}s: {result.tokens_per_s:.0f} tokens/s, "
                  f"pad fraction {result.pad_fraction:.2%}, eval loss {result.eval_loss:.3f} -> {_short(run_dir)}")
    console.rule("[bold]4. held-out tool use: base vs trained (dsft eval compare: greedy, shared renderer + parser)")
    from dsft.cli.evaluate import print_comparison
    from dsft.eval.compare import run_compare

    result = run_compare(str(model_dir), str(run_dir), [str(dataset / "validation.jsonl")], limit=eval_limit,
                         labels=("base", "trained"))
    print_comparison(result, ("base", "trained"), show=2, console=console)


def _short(path: Path) -> Path:
    """Paths relative to the working directory when they are under it: shorter reports."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
