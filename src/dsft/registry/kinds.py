"""The job kinds a worker runs and the schedules it checks: the one table that knows the workflows.

Why a table of its own: the steps (tasks.py: prepare, train, eval) are what the workflows
(pipeline.py, continuous.py) are built from, so the workflows import the steps; with the table
here the steps import no workflow and the worker imports none either. A new kind is one entry in
KINDS; a new periodic check is one entry in SCHEDULES.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dsft.registry import continuous, pipeline, tasks

Task = Callable[[dict[str, Any], tasks.Context], dict[str, Any]]

KINDS: dict[str, Task] = {
    "prepare": tasks.prepare,
    "train": tasks.train,
    "eval": tasks.evaluate,
    "pipeline": pipeline.run,    # collect/generate -> prepare -> train -> eval -> register [-> alias]
    "retrain": continuous.retrain,
}

# Called by every worker on every poll (cheap when nothing is due).
SCHEDULES: list[Callable[[], Any]] = [lambda: continuous.maybe_retrain("schedule")]
