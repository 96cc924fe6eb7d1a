"""One training config, nested by concern, validated before anything heavy runs.

Loaded from YAML and/or flags; saved resolved (every default filled in) as `config.yaml` in the
run folder, so a run can be repeated from its folder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dsft.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    name_or_path: str = Field(description="Hub id or local folder of the base model.")
    trust_remote_code: bool = Field(False, description="Run code shipped with the model. Off unless you trust it.")


class DataConfig(_Strict):
    train: list[str] = Field(description="Training files or folders, any layout dsft reads.")
    validation: list[str] = Field(default_factory=list, description="Held-out files; empty = split --val-ratio off train.")
    val_ratio: float = Field(0.1, ge=0, lt=1, description="Share held out when no validation files are given.")
    max_length: int = Field(2048, gt=0, description="Tokens per example; longer ones are cut from the right.")


class LoraConfig(_Strict):
    r: int = Field(16, gt=0, description="Rank (guide 3.1.3: 8 simple, 16 domain, 32 tool use, 64 full capability).")
    alpha: int = Field(32, gt=0, description="Scaling numerator; the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | Literal["auto"] = Field("auto", description="Module names, or the architecture's preset.")


class TrainingConfig(_Strict):
    epochs: float = Field(3, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, gt=0, description="Examples per micro-batch, grouped by length.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 0
    log_every: int = Field(10, gt=0, description="Steps between metrics.jsonl lines.")
    threads: int | None = Field(None, description="CPU threads for torch (default: all cores).")


class OutputConfig(_Strict):
    dir: str = Field(description="Run folder to create.")


class TrainConfig(_Strict):
    """Everything a run needs. `trainer_kwargs` is the escape hatch for the long tail."""

    model: ModelConfig
    data: DataConfig
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: OutputConfig
    trainer_kwargs: dict[str, Any] = Field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8")


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """YAML (optional) + dotted overrides ({"training.epochs": 2}); every problem named by field."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise UserError(f"cannot read config {path}: {e.strerror}", "check the path") from None
        except yaml.YAMLError as e:
            raise UserError(f"config {path} is not valid YAML: {e}", "fix the YAML syntax") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors()[:5])
        raise UserError(f"invalid training config: {problems}", "fix those fields (see docs/training.md)") from None
