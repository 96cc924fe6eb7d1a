"""The guide's pitfalls table (5.4) as numbers: repetition / mode collapse, and an over/underfitting
verdict read from a run's own curves (task metrics first, then losses) and the task metric just
evaluated: a run that has not learned the task is never a "good fit"."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def repetition(texts: list[str]) -> dict[str, Any]:
    """distinct-1/2 over all generations (unique n-grams / n-grams), the share of generations that
    repeat some 4-gram 3 or more times, and the share identical to the most common generation."""
    words = [t.split() for t in texts]
    out: dict[str, Any] = {"n": len(texts)}
    for n in (1, 2):
        grams = [tuple(w[i:i + n]) for w in words for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else None
    looping = 0
    for w in words:
        counts = Counter(tuple(w[i:i + 4]) for i in range(len(w) - 3))
        looping += bool(counts) and max(counts.values()) >= 3
    out["repeated_4gram_rate"] = looping / len(texts) if texts else None
    top = Counter(texts).most_common(1)
    out["most_common_share"] = top[0][1] / len(texts) if top else None
    return out


TASK_CURVES = (("eval_tool_args_exact_match", "exact arguments"), ("eval_tool_name_accuracy", "tool names"))
UNDERFIT_ADVICE = ["train longer (`dsft train --time-budget 20m`, or more `--epochs`)", "add training data",
                   "for tool-use data, `dsft train --copy-augment` (variants with resampled argument values, "
                   "so the model learns to copy them)"]
OVERFIT_ADVICE = ["keep the best step (`training.early_stopping_metric`), or train fewer epochs", "add training data"]


def call_rows(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Tool names and exact arguments over the rows whose reference makes a call (from
    `by_category`, every category but `no_call`); None when the data has no such row."""
    cats = {k: v for k, v in (summary.get("by_category") or {}).items() if k != "no_call" and v.get("n")}
    n = sum(v["n"] for v in cats.values())
    if not n:
        return None

    def mean(key):
        return sum(v["n"] * (v.get(key) or 0.0) for v in cats.values()) / n

    return {"n": n, "tool_name_accuracy": mean("tool_name_accuracy"),
            "tool_args_exact_match": mean("tool_args_exact_match")}


def _loss_verdict(lines: list[dict], rise: float) -> dict[str, Any]:
    evals = [(x["step"], x["eval_loss"]) for x in lines if x.get("eval_loss") is not None]
    train = [x["loss"] for x in lines if x.get("loss") is not None]
    if len(train) < 4:
        return {"verdict": "unknown", "why": "too few logged steps"}
    if len(evals) >= 2:
        best_step, best = min(evals, key=lambda e: e[1])
        last = evals[-1][1]
        if last > best * (1 + rise):
            return {"verdict": "overfitting", "why": f"eval loss {last:.3f} is {last / best - 1:.0%} above its "
                                                      f"minimum {best:.3f} at step {best_step}",
                    "best_step": best_step}
    tail = train[-max(2, len(train) // 4):]
    if tail[0] > 0 and (tail[0] - tail[-1]) / tail[0] > 0.10:
        return {"verdict": "underfitting", "why": f"train loss still fell from {tail[0]:.3f} to {tail[-1]:.3f} "
                                                   "over the last quarter: train longer"}
    return {"verdict": "good fit", "why": "eval loss at or near its minimum and the train loss has levelled off"}


def _task_verdict(lines: list[dict], drop: float, floor: float) -> dict[str, Any] | None:
    """From the eval_tool_* lines written during training: the first curve with 2+ points decides."""
    for key, name in TASK_CURVES:
        points = [(x["step"], x[key]) for x in lines if x.get(key) is not None]
        if len(points) < 2:
            continue
        best_step, best = max(points, key=lambda p: (p[1], -p[0]))  # the earliest step at the best value
        last_step, last = points[-1]
        if last < best - drop:
            return {"verdict": "overfitting", "metric": key, "best_step": best_step,
                    "why": f"{name} during training fell from its best {best:.3f} at step {best_step} "
                           f"to {last:.3f} at step {last_step}"}
        tail = points[-max(2, len(points) // 4):]
        if tail[-1][1] - tail[0][1] > drop:
            return {"verdict": "underfitting", "metric": key,
                    "why": f"{name} during training still rose from {tail[0][1]:.3f} at step {tail[0][0]} "
                           f"to {last:.3f} at step {last_step} over the last quarter"}
        flat = f"{name} during training levelled off at {last:.3f} (best {best:.3f} at step {best_step})"
        if last < floor:
            return {"verdict": "underfitting", "metric": key, "why": f"not learned: {flat}, below {floor:g}"}
        return {"verdict": "good fit", "metric": key, "why": flat}
    return None


def fit_verdict(run: Path, rise: float = 0.10, summary: dict[str, Any] | None = None, floor: float = 0.5,
                drop: float = 0.05) -> dict[str, Any] | None:
    """An over/underfitting verdict for a run folder; None without RUN/metrics.jsonl.

    1. Task-metric curves first: when metrics.jsonl has 2+ `eval_tool_args_exact_match` (else
       `eval_tool_name_accuracy`) points, `overfitting` when the last is more than `drop` (0.05)
       below the best (with `best_step`), `underfitting` when it still rose by more than `drop`
       over the last quarter of points, else `good fit` (`underfitting` if it levelled off below
       `floor`).
    2. Else the loss curves: `overfitting` when the last eval loss is more than `rise` (10 %) above
       its minimum, `underfitting` when the train loss fell by more than 10 % over the last quarter
       of logged steps (still learning when stopped), else `good fit`.
    3. Then the evaluation just computed (`summary`, from `dsft eval`): when its data has rows with
       a call and their exact arguments or tool names are below `floor` (0.5), the verdict cannot be
       `good fit` (nor `unknown`): it becomes `underfitting`, with the metric in `why`.
    `suggest` lists what to do about an `underfitting` or `overfitting` verdict."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    verdict = _task_verdict(lines, drop, floor)
    loss = _loss_verdict(lines, rise)
    if verdict is None:
        verdict = loss
    elif loss["verdict"] != verdict["verdict"] and loss["verdict"] != "unknown":
        verdict["loss"] = loss  # what the loss curves alone would say
    calls = call_rows(summary or {})
    if calls is not None:
        low = [(name, calls[key]) for key, name in (("tool_args_exact_match", "exact arguments"),
                                                   ("tool_name_accuracy", "tool names")) if calls[key] < floor]
        verdict["task"] = calls
        if low and verdict["verdict"] != "overfitting":
            said = ", ".join(f"{name} {value:.3f}" for name, value in low)
            verdict = {**verdict, "verdict": "underfitting",
                       "why": f"not learned: on the {calls['n']} evaluated rows with a call, {said} "
                              f"(below {floor:g}); the curves alone said {verdict['verdict']}: {verdict['why']}"}
        elif low:
            said = ", ".join(f"{name} {value:.3f}" for name, value in low)
            verdict = {**verdict, "why": f"{verdict['why']}; and on the {calls['n']} evaluated rows with a call, "
                                         f"{said} (below {floor:g})"}
    tools = calls is not None or "metric" in verdict
    if verdict["verdict"] == "underfitting":
        verdict["suggest"] = list(UNDERFIT_ADVICE if tools else UNDERFIT_ADVICE[:2])
    elif verdict["verdict"] == "overfitting":
        verdict["suggest"] = list(OVERFIT_ADVICE)
    return verdict
