"""One training config, nested by concern, validated before anything heavy runs.

Loaded from YAML and/or flags; saved resolved (every default filled in) as `config.yaml` in the
run folder, so a run can be repeated from its folder alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from dsft.errors import UserError

Metric = Literal["eval_loss", "eval_tool_name_accuracy", "eval_tool_args_exact_match"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    name_or_path: str = Field(description="Hub id or local folder of the base model.")
    trust_remote_code: bool = Field(False, description="Run code shipped with the model. Off unless you trust it.")
    init_from: str | None = Field(None, description="Warm start: a full finetune's folder (its weights replace the "
                                                   "base's) or an adapter over this base (trained further).")


class Phase(_Strict):
    """One curriculum phase (guide 5.1.1): its own data and epochs, trained in order."""

    name: str
    train: list[str]
    epochs: float = Field(1, gt=0, le=1_000_000)


class DataConfig(_Strict):
    train: list[str] = Field(default_factory=list, description="Training files or folders, any layout dsft reads.")
    curriculum: list[Phase] = Field(default_factory=list,
                                    description="Ordered phases; replaces `train` and training.epochs when given.")
    validation: list[str] = Field(default_factory=list, description="Held-out files; empty = split --val-ratio off train.")
    val_ratio: float = Field(0.1, ge=0, lt=1, description="Share held out when no validation files are given.")
    max_length: int = Field(2048, gt=0, le=10_000_000, description="Tokens per example; longer ones are cut from the right.")
    copy_augment: float = Field(0, ge=0, le=100, description="Copy augmentation: variants per tool-use training row "
                                "whose argument values stand verbatim in the user's turn, with those values "
                                "resampled in the same shape (0 = off). Never applied to validation data.")

    @model_validator(mode="after")
    def _has_data(self) -> DataConfig:
        if not self.train and not self.curriculum:
            raise ValueError("give data.train (files) or data.curriculum (phases)")
        return self


class LoraConfig(_Strict):
    r: int = Field(16, gt=0, le=65536, description="Rank (guide 3.1.3: 8 simple, 16 domain, 32 tool use, 64 full capability).")
    alpha: int = Field(32, gt=0, le=1_000_000, description="Scaling numerator; the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | Literal["auto", "attention", "vllm"] = Field(
        "auto", description="Module names, the architecture's preset (auto), its attention projections only "
        "(attention: on DeepSeek-V2/V3 the adapter plain PEFT loads as trained), or the preset less what "
        "vLLM does not apply (vllm: no kv_b_proj).")
    experts: bool = Field(False, description="Also adapt the fused routed experts of MoE models (peft parameter "
                                            "targeting); needs dropout 0, not available with DoRA.")


class TrainingConfig(_Strict):
    epochs: float = Field(3, gt=0, le=1_000_000)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, gt=0, le=1_000_000, description="Examples per micro-batch, grouped by length.")
    grad_accum: int = Field(1, gt=0, le=1_000_000, description="Micro-batches per optimizer step.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    log_every: int = Field(10, gt=0, le=10**9, description="Steps between metrics.jsonl lines.")
    eval_every: int | None = Field(50, gt=0, le=10**9, description="Steps between eval losses on the validation split "
                                   "(with a time budget: about `evals` evaluations spread over the run instead).")
    evals: int = Field(12, gt=0, le=10_000, description="Evaluations in a run with a time budget.")
    save_every: int | None = Field(None, gt=0, le=10**9, description="Steps between checkpoints (for --resume); none = off.")
    save_minutes: float | None = Field(5, gt=0, le=10**6, description="Minutes between checkpoints besides "
                                       "`save_every`, so a killed run loses at most this much; none = off.")
    eval_tool_sample: int = Field(32, ge=0, le=1_000_000, description="Validation examples (with tool calls or "
                                  "answered without one) generated at each eval for tool-name/argument accuracy "
                                  "(0 = off).")
    early_stopping_metric: Metric | None = Field(None, description="eval_loss, eval_tool_name_accuracy or "
                                                 "eval_tool_args_exact_match; none = off.")
    early_stopping_patience: int = Field(3, gt=0, le=1_000_000, description="Evaluations without improvement before stopping.")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list,
                                                              description="Metric sinks besides metrics.jsonl.")
    threads: int | None = Field(None, ge=0, le=4096, description="CPU threads for torch (default: all cores).")
    memory_check: bool = Field(True, description="Refuse a run whose memory estimate exceeds the free memory "
                               "(RAM or GPU), with a batch size that fits, instead of being killed mid-run.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward: less memory, ~30% slower.")
    time_budget: float | None = Field(None, gt=0, le=10**7, description="Seconds of training (evaluations included): "
                                      "the step count is fitted to it after the first steps are timed, and "
                                      "`epochs` becomes the most the run may take; none = train `epochs`.")
    keep_best: Metric | Literal["auto"] | None = Field("auto", description="Keep the weights of the best evaluation "
                                                       "by this metric, not the last step's; auto = exact "
                                                       "arguments when the validation data has tool calls, else "
                                                       "eval_loss; none = keep the last.")
    shared_prefix: bool = Field(True, description="Run the tokens every row of a batch starts with once (exact; "
                                "off with gradient checkpointing and prefix tuning).")
    decision_weight: float = Field(1.0, ge=1, le=100, description="Loss weight of the tokens that end a JSON "
                                   "value and decide what follows (another argument or the end of the call: "
                                   "`,\"`, `}` ...); 1 = plain cross-entropy. The reported losses stay unweighted.")


class ChatConfig(_Strict):
    """Which DeepSeek format the run trains in (docs/formats.md); recorded with the run's tokenizer."""

    family: str | None = Field(None, description="deepseek_llm, deepseek_coder, deepseek_v25, deepseek_v3, "
                               "deepseek_v31, deepseek_r1, deepseek_v32 or deepseek_v4; empty = told from the model.")
    thinking: bool = Field(False, description="Thinking mode for V3.1, V3.2 and V4 (R1 always thinks).")
    reasoning_turns: Literal["last", "all"] = Field("last", description="Whose reasoning is rendered and trained: "
                                                    "the reply after the last user turn (as DeepSeek's encoders do), or every turn's.")

    reasoning_effort: Literal["max"] | None = Field(None, description="V4 in thinking mode: 'max' prefixes its "
                                                    "reasoning-effort instruction, as DeepSeek's encoder does.")

    @field_validator("family")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        from dsft.chat.families import FAMILIES

        if value is not None and value not in FAMILIES:
            raise ValueError(f"unknown chat family {value!r}; choose one of: {', '.join(FAMILIES)}")
        return value


class OutputConfig(_Strict):
    dir: str = Field(description="Run folder to create.")


class TrainConfig(_Strict):
    """Everything a run needs. `trainer_kwargs` is the escape hatch for the long tail."""

    model: ModelConfig
    data: DataConfig
    method: Literal["lora", "dora", "qlora", "ia3", "prefix", "full"] = "lora"
    prefix_tokens: int = Field(16, gt=0, le=65536, description="Virtual tokens for --method prefix.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: OutputConfig
    chat: ChatConfig = Field(default_factory=ChatConfig)
    rank_preset: Literal["simple", "domain", "tool-use", "full-capability"] | None = Field(
        None, description="The guide's rank table (3.1.3); sets lora.r and lora.alpha unless given.")
    trainer_kwargs: dict[str, Any] = Field(default_factory=dict)
    _preset_report: str | None = PrivateAttr(None)
    _preset_warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def preset_report(self) -> str | None:
        return self._preset_report

    @property
    def preset_warnings(self) -> list[str]:
        return self._preset_warnings

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8")


def read_mapping(path: str | Path, example: str) -> dict[str, Any]:
    """A YAML (or JSON) file that must hold a mapping, or a UserError naming the file and `example`."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise UserError(f"cannot read config {path}: {e.strerror}", "check the path") from None
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"config {path} is not a mapping", f"see {example} for the layout")
    return raw


def read_file(path: str | Path) -> dict[str, Any]:
    """A YAML/JSON config file as nested dicts; the guide's layout (section 2.1) is mapped onto ours."""
    raw = read_mapping(path, "configs/tiny-demo.yaml")
    return from_guide(raw) if "baseModel" in raw else raw


_GUIDE_KEYS = {("training", "epochs"): "training.epochs", ("training", "batchSize"): "training.batch_size",
               ("training", "learningRate"): "training.learning_rate",
               ("training", "warmupRatio"): "training.warmup_ratio",
               ("training", "weightDecay"): "training.weight_decay",
               ("data", "validationSplit"): "data.val_ratio", ("data", "maxSeqLength"): "data.max_length"}


def from_guide(raw: dict[str, Any]) -> dict[str, Any]:
    """The guide's `{baseModel, training, data, output}` config -> dsft's nested layout.

    `data.format` is ignored (dsft detects layouts per record); `output.modelName` names the run
    folder under DSFT_HOME/runs; `saveCheckpoints`/`evaluationStrategy` have no dsft equivalent
    yet and are ignored. Other keys are taken as dsft's own fields and validated as such."""
    out: dict[str, Any] = {}
    dotted: dict[str, Any] = {"model.name_or_path": raw.pop("baseModel")}
    for section in ("training", "data", "output"):
        for key, value in (raw.pop(section, None) or {}).items():
            if (section, key) in _GUIDE_KEYS:
                dotted[_GUIDE_KEYS[(section, key)]] = value
            elif (section, key) == ("output", "modelName"):
                from dsft.home import dsft_home

                dotted["output.dir"] = str(dsft_home() / "runs" / value)
            elif (section, key) not in {("data", "format"), ("output", "saveCheckpoints"),
                                        ("output", "evaluationStrategy")}:
                dotted[f"{section}.{key}"] = value  # dsft's own field; validation names it if unknown
    out.update(raw)  # dsft's own sections may sit beside the guide's (e.g. data.train, method)
    return merge(out, dotted)


def merge(raw: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    """Apply {"a.b": v} overrides onto nested dicts (a copy)."""
    out = json.loads(json.dumps(raw))
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def validate(raw: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors()[:5])
        raise UserError(f"invalid training config: {problems}", "fix those fields (see docs/training.md)") from None


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Config file (optional) + dotted overrides, with the presets of its model and method beneath."""
    return resolve(read_file(path) if path is not None else {}, overrides)


def resolve(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A config as nested dicts (dsft's layout or the guide's) + dotted overrides, presets beneath.
    What the presets set is kept on the config (`preset_report`, `preset_warnings`) for the CLI."""
    from dsft.train.presets import defaults, describe

    raw = from_guide(dict(raw)) if "baseModel" in raw else raw
    flags = dict(overrides or {})
    layered = merge(raw, flags)
    model = layered.get("model", {}).get("name_or_path")
    given = _flatten(layered)
    preset = defaults(model, layered.get("method"), layered.get("rank_preset"))
    cfg = validate(merge(merge({}, preset.values), given))
    cfg._preset_report = describe(preset, given)
    cfg._preset_warnings = list(preset.warnings)
    return cfg


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key not in ("trainer_kwargs",):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
