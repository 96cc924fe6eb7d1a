"""`dsft demo`: the main job on the embedded default, end to end as far as dsft goes today.

Today that is the data path: generate LightDom tool-use conversations from the built-in
scenarios, add the guide's own examples and a mixed-layout sample with deliberately broken
rows, then prepare a dataset and print the report. Later stages (training, evaluation,
registry, serving) extend this command as they land.
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


def demo(n: int = typer.Option(300, "-n", help="Generated tool-use examples."),
         seed: int = typer.Option(0, "--seed")) -> None:
    """Run the data path on the built-in LightDom example data and print the report."""
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


def _short(path: Path) -> Path:
    """Paths relative to the working directory when they are under it: shorter reports."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
