"""The guide's pitfalls table (5.4) as numbers: repetition / mode collapse, and an over/underfitting
verdict read from a run's own curves."""

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


def fit_verdict(run: Path, rise: float = 0.10) -> dict[str, Any] | None:
    """From RUN/metrics.jsonl: `overfitting` when the last eval loss is more than `rise` (10 %) above
    its minimum, `underfitting` when the train loss fell by more than 10 % over the last quarter
    of logged steps (still learning when stopped), else `good fit`. None without curves."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    evals = [(x["step"], x["eval_loss"]) for x in lines if x.get("eval_loss") is not None]
    train = [x["loss"] for x in lines]
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
