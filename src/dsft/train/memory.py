"""Will this run fit in memory? Asked before the first step.

A run that outgrows a CPU machine's memory is killed by the kernel with no message at all (measured:
LoRA on a 135M model at the default batch, killed at 23.8 GB after 57 s). So the trainer compares
`dsft estimate`'s figures for this very run (its model as loaded, its method and targets, its
longest example, its micro-batch, its precision) with the memory free now, and refuses a run that
would not fit, with the largest batch size that would. The model is already loaded when this runs,
so its weights are counted as taken, not as needed. `training.memory_check: false` skips it (the
estimate is an estimate: see docs/training.md for how far off it was on the runs measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsft.errors import UserError
from dsft.train.estimate import GB, estimate

HEADROOM = 0.9  # share of the free memory a run may plan to fill


@dataclass
class Fit:
    needed: float  # bytes this run still needs beyond the loaded weights
    free: float
    where: str

    @property
    def fits(self) -> bool:
        return self.needed <= HEADROOM * self.free


def free_memory() -> tuple[float, str]:
    if torch.cuda.is_available():
        return float(torch.cuda.mem_get_info()[0]), "the GPU"
    import psutil

    return float(psutil.virtual_memory().available), "this machine (RAM)"


def _needed(model, cfg, seq_len: int, batch: int, checkpointing: bool) -> float:
    method = cfg.method if cfg.method in ("lora", "qlora", "full") else "lora"  # dora/ia3/prefix: LoRA-sized
    est = estimate(cfg.model.name_or_path, method, seq_len, batch, cfg.lora.r, checkpointing, model=model,
                   precision="bf16" if method == "qlora" else "fp32", targets=cfg.lora.targets)
    return est.total - est.rows.get("weights", 0)


def check(model, cfg, seq_len: int) -> Fit:
    """Refuse (UserError) a run whose estimate does not fit the free memory, naming what would."""
    t = cfg.training
    free, where = free_memory()
    fit = Fit(_needed(model, cfg, seq_len, t.batch_size, t.gradient_checkpointing), free, where)
    if fit.fits or not t.memory_check:
        return fit
    smaller = next((b for b in range(t.batch_size - 1, 0, -1)
                    if _needed(model, cfg, seq_len, b, t.gradient_checkpointing) <= HEADROOM * free), None)
    fixes = []
    if smaller:
        # A divisor of the batch keeps the optimizer step exactly (rows per step = batch x grad_accum).
        exact = next(b for b in range(smaller, 0, -1) if t.batch_size % b == 0)
        rows = t.batch_size * t.grad_accum
        fixes.append(f"--batch-size {exact} (with training.grad_accum: {rows // exact} for the same {rows} rows "
                     "per step)")
        if smaller != exact:
            fixes.append(f"--batch-size {smaller}, the largest that fits")
    elif not t.gradient_checkpointing and _needed(model, cfg, seq_len, 1, True) <= HEADROOM * free:
        fixes.append("--batch-size 1 with training.gradient_checkpointing: true")
    else:
        fixes.append(f"a shorter --max-length than the longest example's {seq_len} tokens, or a machine with more "
                     "memory")
    fixes.append("training.memory_check: false to try anyway")
    raise UserError(f"this run needs about {fit.needed / GB:.1f} GB more than its loaded model (batch "
                    f"{t.batch_size}, examples up to {seq_len} tokens, {cfg.method}) but {where} has "
                    f"{free / GB:.1f} GB free: it would be killed for memory", "; or ".join(fixes))
