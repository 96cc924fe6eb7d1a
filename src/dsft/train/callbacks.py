"""What a run measures at each evaluation beside its loss, handed to the trainer by its caller.

Why callbacks (TRL's `TrainerCallback` is the model): the trainer knows losses, steps and
checkpoints, not what a task's metric is. A callback sees the validation conversations when the
run starts and reports named figures at each evaluation; the trainer logs them, keeps the best
step by them and stops early on them. dsft's tool-call accuracy is one (eval/during_training.py),
passed by `dsft train` and the job queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsft.data.conversation import Conversation
from dsft.errors import UserError


class TrainingCallback:
    """Nothing by default; subclasses report figures named `eval_*`."""

    metrics: tuple[str, ...] = ()  # the names on_evaluate may report (checked against the config)

    def on_train_begin(self, cfg: Any, validation: list[Conversation]) -> None:
        """Called once, with the run's config and validation conversations, before the first step."""

    def on_evaluate(self, model: Any, tokenizer: Any, step: int) -> dict[str, float]:
        """Figures for this evaluation; the model is left in training mode afterwards by the trainer."""
        return {}

    def task_metric(self) -> str | None:
        """The metric `keep_best: auto` should mean for this run (after on_train_begin), if any."""
        return None


def reported(callbacks: Sequence[TrainingCallback]) -> set[str]:
    return {"eval_loss"} | {m for c in callbacks for m in c.metrics}


def check_metrics(cfg: Any, callbacks: Sequence[TrainingCallback]) -> None:
    """A metric the config keeps the best of or stops early on must be one something reports:
    else the run would silently never keep or stop."""
    t = cfg.training
    known = reported(callbacks)
    for field, metric in (("training.keep_best", t.keep_best), ("training.early_stopping_metric",
                                                                 t.early_stopping_metric)):
        if metric not in (None, "auto") and metric not in known:
            raise UserError(f"{field} is {metric!r}, which nothing in this run reports",
                            f"use one of {', '.join(sorted(known))}")
