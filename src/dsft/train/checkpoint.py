"""Checkpoints that a killed run resumes from exactly.

A checkpoint holds what changes during training and nothing else: the trainable parameters
(safetensors), the optimizer and scheduler states, the step, and the RNG states. It is written
to `step-N.tmp/` and renamed to `step-N/` only when complete, so a run killed mid-write leaves
the previous checkpoint intact; the newest complete one is what `--resume` loads. The batch
order is a pure function of the seed, so resuming skips the steps already taken and every
later step sees the same batches, weights and random numbers as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = 2


def save(run: Path, step: int, model, optimizer, scheduler, progress: dict | None = None) -> Path:
    """`progress`: the run's figures so far (tokens, pads, seconds), so a resumed run reports the whole
    run. Under several processes they are the main rank's own (its tokens, not all ranks')."""
    root = run / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step-{step}", root / f"step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    trainable = {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
    for p in trainable.values():
        if not torch.isfinite(p).all():
            raise RuntimeError(f"non-finite weights at step {step}: refusing to checkpoint")
    save_file(trainable, tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp / "state.pt")
    (tmp / "step.json").write_text(json.dumps({"step": step, "progress": progress or {}}))
    tmp.rename(final)
    for old in sorted(root.glob("step-*"), key=_step)[:-KEEP]:
        if not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run: Path) -> Path | None:
    done = [p for p in (run / "checkpoints").glob("step-*") if not p.name.endswith(".tmp") and (p / "step.json").exists()]
    return max(done, key=_step) if done else None


def load(path: Path, model, optimizer, scheduler) -> int:
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    state = torch.load(path / "state.pt", weights_only=False)  # our own file, written by `save`
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return json.loads((path / "step.json").read_text())["step"]


def progress(path: Path) -> dict:
    """The run's figures when checkpoint `path` was written ({} for checkpoints from before dsft kept them)."""
    return json.loads((path / "step.json").read_text()).get("progress") or {}


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step-").removesuffix(".tmp"))
