"""Defaults chosen by measurement or taken from the guide, applied when the user does not say otherwise.

Order of precedence: method defaults < rank preset < config file < flags.

- Method defaults follow the guide's table (section 5.2.1): LoRA/DoRA/QLoRA lr 2e-4, 3 epochs,
  warmup 0.1, weight decay 0.01 (batch 8, 4 for QLoRA); full finetune lr 2e-5, 2 epochs, batch 4.
- Rank presets follow the guide's rank table (section 3.1.3): simple 8/16, domain 16/32,
  tool-use 32/64, full-capability 64/128 (rank/alpha).
- The tiny embedded model is small (1.7M parameters) and, unless built from the shipped pretrained
  weights (model/warm_start.py), random-initialised: LoRA on it has little to adapt, so its
  preset is a full finetune, fitted to a 10-minute time budget (at most 30 epochs), the best
  evaluation kept, with copy augmentation for tool-use rows. Chosen on `benchmarks/learning.py`
  (domains dsft ships nothing about), not on the demo's data; figures in docs/training.md.
- The tool-use rank preset also turns copy augmentation on (data.copy_augment 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.errors import UserError

TINY_MARKER = "dsft_tiny"  # written into the tiny model's config by `dsft model tiny`

RANKS: dict[str, tuple[int, int]] = {"simple": (8, 16), "domain": (16, 32), "tool-use": (32, 64),
                                     "full-capability": (64, 128)}
_ADAPTER = {"training.learning_rate": 2e-4, "training.epochs": 3, "training.batch_size": 8,
            "training.warmup_ratio": 0.1, "training.weight_decay": 0.01}
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "lora": _ADAPTER, "dora": _ADAPTER, "ia3": {**_ADAPTER, "training.learning_rate": 3e-3},
    "prefix": {**_ADAPTER, "training.learning_rate": 1e-2},
    "qlora": {**_ADAPTER, "training.batch_size": 4},
    "full": {"training.learning_rate": 2e-5, "training.epochs": 2, "training.batch_size": 4,
             "training.warmup_ratio": 0.1, "training.weight_decay": 0.01},
}
# batch_size 2: a from-scratch model learns by optimizer steps, and rows are long (tool schemas).
# Measured (2 cores, held-out calendar, 4-minute budget): batch 8 -> 391 steps, names 0.275, exact 0.00,
# parse 0.58; batch 4 -> 764 steps, 0.375 / 0.05 / 0.53; batch 2 -> 1,317 steps, 0.525 / 0.05 / 0.90.
TINY: dict[str, Any] = {"method": "full", "training.learning_rate": 2e-3, "training.epochs": 30,
                        "training.batch_size": 2, "training.warmup_ratio": 0.03, "training.weight_decay": 0.0,
                        "training.time_budget": 600, "training.eval_tool_sample": 48, "data.max_length": 4096,
                        "data.copy_augment": 1}


def tiny_info(name_or_path: str) -> dict | None:
    """What `dsft model tiny` recorded in the model's config; None for any other model."""
    config = Path(name_or_path) / "config.json"
    return json.loads(config.read_text()).get(TINY_MARKER) if config.is_file() else None


def is_tiny(name_or_path: str) -> bool:
    return bool(tiny_info(name_or_path))


ADAPTER_ON_PRETRAINED = ("the tiny model is pretrained on generic tool use only, and small: an adapter on it "
                         "learns less in the same time than the full finetune its preset runs (drop --method)")
ADAPTER_ON_RANDOM = ("adapters on a random-init base learn little: the base has nothing to adapt (measured on "
                     "the tiny model: LoRA left every tool metric at 0). Train it in full (drop --method: the "
                     "tiny preset does) or give a pretrained base")


QLORA_ON_CPU = ("QLoRA without a CUDA GPU runs its 4-bit matmuls on bitsandbytes' CPU fallback: slower than "
                "--method lora, which fits in memory wherever a model small enough for a CPU does. QLoRA is "
                "for fitting a large model on a GPU")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass
class Preset:
    """Dotted defaults for a run, what they are named after, and what to tell the user about them."""

    values: dict[str, Any]
    source: str
    warnings: list[str] = field(default_factory=list)

    def applied(self, given: dict[str, Any]) -> dict[str, Any]:
        """The preset's values the user's config and flags did not set: what the preset changed."""
        return {k: v for k, v in self.values.items() if k not in given}


def defaults(name_or_path: str | None, method: str | None, rank: str | None = None) -> Preset:
    """Dotted overrides for a model, method and rank preset (before the user's config and flags).

    A rank preset sets LoRA's r/alpha, so on a full finetune it would be dead config: refused. An
    adapter method on the tiny random-init model is allowed (tests use it) with a warning."""
    info = tiny_info(name_or_path) if name_or_path else None
    tiny, pretrained = bool(info), bool(info and info.get("pretrained"))
    warnings = []
    if method is None and tiny:
        start = "pretrained on generic tool use" if pretrained else "random init"
        out, source = dict(TINY), f"the tiny model's preset ({start}: a full finetune)"
    else:
        method = method or "lora"
        out, source = {"method": method, **METHOD_DEFAULTS[method]}, f"the {method} defaults (guide 5.2.1)"
        if tiny and method != "full":
            warnings.append(f"--method {method} on {name_or_path}: "
                            f"{ADAPTER_ON_PRETRAINED if pretrained else ADAPTER_ON_RANDOM}")
        if method == "qlora" and not _cuda():
            warnings.append(QLORA_ON_CPU)
    if rank is not None:
        if out["method"] not in ("lora", "dora", "qlora"):
            why = "the tiny model trains in full" if method is None and tiny else f"method {out['method']} has no rank"
            raise UserError(f"--preset {rank} sets LoRA's rank and alpha, but this run is not a LoRA run ({why})",
                            "drop --preset, or pass --method lora/dora/qlora"
                            + (f" ({ADAPTER_ON_RANDOM})" if tiny else ""))
        r, alpha = RANKS[rank]
        out.update({"lora.r": r, "lora.alpha": alpha})
        source += f" + rank preset {rank} (guide 3.1.3)"
        if rank == "tool-use":
            out["data.copy_augment"] = 1
    return Preset(out, source, warnings)


def describe(preset: Preset, given: dict[str, Any]) -> str:
    """One line: the preset and each value it set, e.g. for `dsft train` to print before training."""
    changed = preset.applied(given)
    parts = [f"{k.split('.')[-1]} {v:g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
             for k, v in changed.items()]
    return f"{preset.source}: " + (", ".join(parts) if parts else "nothing (your config sets every value)")
