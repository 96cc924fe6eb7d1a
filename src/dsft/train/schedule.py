"""How long a run trains, and which of its weights it keeps.

- `Schedule`: warm-up then cosine decay over the run's steps. Without a time budget the steps are
  the epochs' worth of batches. With one (`training.time_budget`), the first steps are timed, an
  evaluation is timed, and the step count is fitted so that training and the planned evaluations
  end inside the budget (never more than `epochs` allow); when the epochs plainly end inside it
  (under half the time left), they are kept as they are and no evaluation is timed. The fitted
  numbers are written to `schedule.json` in the run folder, so `--resume` continues the same
  schedule exactly.
- `BestKeeper`: the weights of the best evaluation by a chosen metric are saved to `best/` as they
  happen and put back before the run is saved, so a run's final weights are its best, not its last.
  A tie on the metric goes to the lower eval loss (so a run whose accuracy never moves keeps its
  best-fitting step, not its first).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dsft.errors import UserError

EVAL_SHARE = 0.25  # most of a budget's remaining time that evaluations may take
MIN_EVAL_INTERVAL = 10  # steps: a short run evaluates less often rather than spend its budget evaluating
EPOCHS_FIT_SHARE = 0.5  # epochs needing under this share of the time left are not fitted to the budget
CALIBRATION_STEPS = 4  # steps timed before the budget fixes the step count (after one untimed step)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' or plain seconds -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise UserError(f"--time-budget {text!r} is not a duration", "write e.g. 90s, 10m or 1h")
    value = float(m.group(1)) * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise UserError(f"--time-budget {text!r} must be more than zero", "write e.g. 90s, 10m or 1h")
    return value


class Schedule:
    """Learning-rate factor per step; `total` may be fitted once, after calibration."""

    def __init__(self, planned: int, warmup_ratio: float, eval_every: int | None):
        self.planned = self.total = planned
        self.warmup_ratio = warmup_ratio
        self.eval_every = eval_every
        self.fitted: dict | None = None

    @property
    def warmup(self) -> int:
        return int(self.total * self.warmup_ratio)

    def __call__(self, step: int) -> float:
        warmup = self.warmup
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.total - warmup))))

    def fit(self, budget: float, elapsed: float, step: int, step_seconds: float, eval_seconds: float,
            evals: int, reserve: float) -> dict:
        """Fix the step count so that the evaluations and the remaining steps end by `budget`.

        Evaluations get at most a quarter of the time left (fewer of them when each is slow: the
        first, timed on a model that has not learnt to stop, is the slowest), training the rest;
        they are at least MIN_EVAL_INTERVAL steps apart (a few long evaluations in a short run).
        Already past the budget, the run stops at this step."""
        room = budget - elapsed - reserve
        evals = min(evals, int(EVAL_SHARE * room / eval_seconds)) if eval_seconds > 0 and room > 0 else evals
        evals = max(evals, 1)
        # No room for another step and its evaluation: the run ends here, the timed evaluation its last.
        steps = max(0, int((room - evals * eval_seconds) / step_seconds)) if room > 0 else 0
        self.total = min(self.planned, step + steps)
        self.eval_every = max(min(MIN_EVAL_INTERVAL, self.total - step), (self.total - step) // evals, 1)
        evals = max(1, (self.total - step) // self.eval_every)
        self.fitted = {"total_steps": self.total, "eval_every": self.eval_every, "evals": evals,
                       "planned_steps": self.planned,
                       "step_seconds": round(step_seconds, 4), "eval_seconds": round(eval_seconds, 3),
                       "fitted_at_step": step, "budget_seconds": budget}
        return self.fitted

    def within(self, budget: float, step: int, step_seconds: float) -> dict:
        """The epochs end well inside the budget: keep their steps and the configured evaluations,
        and skip the timed probe evaluation (a short run should not pay for fitting a long one)."""
        self.fitted = {"total_steps": self.total, "eval_every": self.eval_every, "evals": None,
                       "planned_steps": self.planned, "step_seconds": round(step_seconds, 4),
                       "fitted_at_step": step, "budget_seconds": budget, "epochs_fit_the_budget": True}
        return self.fitted

    def refit(self, budget: float, elapsed: float, step: int, step_seconds: float, eval_seconds: float,
              reserve: float, at_eval: bool = True) -> None:
        """Fit the remaining steps again with the times measured lately (the first steps and the first
        evaluation are poor predictors, and a machine's speed changes), keeping the evaluation interval."""
        if not self.fitted or not self.eval_every:
            return
        room = budget - elapsed - reserve
        per_step = step_seconds + eval_seconds / self.eval_every
        # Past the budget: stop at this step if it was evaluated, else after the next, which will be
        # (one more step at every evaluation would never end).
        last = step if at_eval else step + 1
        self.total = min(self.planned, step + max(1, int(room / per_step))) if room > 0 else min(self.planned, last)
        self.fitted.update({"total_steps": self.total, "step_seconds": round(step_seconds, 4),
                            "eval_seconds": round(eval_seconds, 3), "refitted_at_step": step})

    def save(self, run: Path) -> None:
        if self.fitted:
            (run / "schedule.json").write_text(json.dumps(self.fitted, indent=2), encoding="utf-8")

    def restore(self, run: Path) -> bool:
        path = run / "schedule.json"
        if not path.is_file():
            return False
        self.fitted = json.loads(path.read_text(encoding="utf-8"))
        self.total, self.eval_every = self.fitted["total_steps"], self.fitted["eval_every"]
        return True


def better(metric: str, value: float, best: float | None) -> bool:
    """Losses fall, accuracies rise; ties keep the earlier step."""
    return best is None or (value < best if metric.endswith("loss") else value > best)


class BestKeeper:
    """Saves the trainable weights whenever `metric` improves; `restore` puts the best back."""

    def __init__(self, run: Path, metric: str | None):
        self.folder, self.metric = run / "best", metric
        self.best: float | None = None
        self.best_loss: float | None = None
        self.step: int | None = None
        if self.metric and (self.folder / "best.json").is_file():  # a resumed run keeps its best so far
            seen = json.loads((self.folder / "best.json").read_text())
            self.best, self.step, self.best_loss = seen["value"], seen["step"], seen.get("eval_loss")

    def see(self, step: int, line: dict, model) -> bool:
        """Save the weights if this evaluation is the best yet (the trainer does not show it the
        first tenth of a run: a model too young to call any tool still scores on rows that need none)."""
        value = line.get(self.metric) if self.metric else None
        if value is None:
            return False
        loss = line.get("eval_loss")
        tie_broken = (value == self.best and loss is not None and self.best_loss is not None and loss < self.best_loss)
        if not better(self.metric, value, self.best) and not tie_broken:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        trainable = {n: p.detach().contiguous().clone().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trainable, self.folder / "trainable.safetensors")
        self.best, self.step, self.best_loss = value, step, loss
        (self.folder / "best.json").write_text(json.dumps({"metric": self.metric, "value": value, "step": step,
                                                           "eval_loss": loss}))
        return True

    def restore(self, model, last_step: int) -> dict | None:
        """Load the best weights unless the last step is the best; what was kept, for run.json."""
        if self.step is None:
            return None
        if self.step != last_step:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in load_file(self.folder / "trainable.safetensors").items():
                    params[name].copy_(value)
        return {"metric": self.metric, "value": self.best, "step": self.step, "last_step": last_step}
