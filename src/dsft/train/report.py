"""What a run folder tells a person: `loss.png` (train and eval loss) and a model card."""

from __future__ import annotations

import json
from pathlib import Path


def write_run_report(run: Path, cfg, result) -> None:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    _plot(lines, run / "loss.png")
    evals = [x for x in lines if x.get("eval_loss") is not None]
    card = [
        "---", "library_name: peft" if cfg.method not in ("full",) else "library_name: transformers",
        f"base_model: {cfg.model.name_or_path}", "tags: [dsft]", "---", "",
        f"# {run.name}", "",
        f"Finetuned by dsft from `{cfg.model.name_or_path}` with **{cfg.method}**"
        + (f" (r {cfg.lora.r}, alpha {cfg.lora.alpha})" if cfg.method in ("lora", "dora", "qlora") else "") + ".", "",
        "| | |", "|---|---|",
        f"| training data | {', '.join(cfg.data.train)} |",
        f"| steps | {result.steps} |",
        f"| epochs | {cfg.training.epochs:g} |",
        f"| learning rate | {cfg.training.learning_rate:g} |",
        f"| final train loss | {result.train_loss:.4f} |",
        f"| final eval loss | {'n/a' if result.eval_loss is None else f'{result.eval_loss:.4f}'} |",
        f"| pad fraction | {result.pad_fraction:.2%} |",
        f"| throughput | {result.tokens_per_s:,.0f} tokens/s |", "",
        "The resolved configuration is in `config.yaml`; per-step metrics in `metrics.jsonl`; "
        "the loss curves in `loss.png`." + (f" {len(evals)} evaluations during training." if evals else ""), "",
    ]
    (run / "README.md").write_text("\n".join(card), encoding="utf-8")


def _plot(lines: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(lines)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(lines: list[dict]):
    """Loss and held-out accuracy over steps. Evaluations are drawn as points joined by lines: a run
    with one evaluation (a short budget) still shows it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([x["step"] for x in lines], [x["loss"] for x in lines], label="train loss",
            marker="." if len(lines) < 2 else None)
    evals = [x for x in lines if x.get("eval_loss") is not None]
    if evals:
        ax.plot([x["step"] for x in evals], [x["eval_loss"] for x in evals], marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per supervised token)")
    tools = [x for x in lines if x.get("eval_tool_args_exact_match") is not None]
    if tools:
        acc = ax.twinx()
        acc.plot([x["step"] for x in tools], [x["eval_tool_name_accuracy"] for x in tools], "g--", marker="s",
                 label="tool names")
        acc.plot([x["step"] for x in tools], [x["eval_tool_args_exact_match"] for x in tools], "m--", marker="^",
                 label="exact arguments")
        acc.set_ylim(0, 1)
        acc.set_ylabel("held-out accuracy")
        acc.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
