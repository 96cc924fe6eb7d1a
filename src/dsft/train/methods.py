"""Finetuning methods behind one registry: how the base is loaded and how it is wrapped.

| method | base weights | trained | notes |
|---|---|---|---|
| full | as stored | everything | |
| lora | as stored | low-rank adapters on the resolved targets | |
| dora | as stored | LoRA + a learned magnitude (peft `use_dora`) | refused on fused MoE experts |
| qlora | NF4, double-quantised, bf16 compute (bitsandbytes) | LoRA | bitsandbytes' CPU backend trains it too |
| ia3 | as stored | learned rescaling vectors (peft IA3) | the guide's "adapter layers" |
| prefix | as stored | virtual key/value prefixes (peft prefix tuning) | needs standard attention caches |
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from dsft.errors import UserError

METHODS = ("lora", "dora", "qlora", "ia3", "prefix", "full")
ADAPTER_METHODS = {"lora", "dora", "qlora"}


def quiet_adapter_libraries() -> None:
    """Silence what every adapter run printed that the user cannot act on: bitsandbytes logs, on every
    CPU run that imports it (peft does, for any adapter, in training, eval and serving), that an
    optional kernel package is missing (the QLoRA preset's warning says once why QLoRA on a CPU is
    slow); peft asks the model for `is_gradient_checkpointing`, which transformers 5 deprecates (a
    FutureWarning at every load; the trainer reports the method's real costs instead)."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)


def quantization_config(method: str) -> Any | None:
    """BitsAndBytesConfig for QLoRA (the guide's section 3.2.2 settings), None otherwise."""
    if method != "qlora":
        return None
    quiet_adapter_libraries()
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise UserError("QLoRA needs bitsandbytes, which is not installed",
                        "pip install 'bitsandbytes>=0.45', or use --method lora") from None
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def wrap(model, cfg):
    """The model ready to train with `cfg.method`; adapted modules are checked, not assumed."""
    if cfg.method == "full":
        return model
    quiet_adapter_libraries()
    from peft import get_peft_model

    from dsft.train.targets import check_adapted, exact_targets, resolve

    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
    if cfg.method == "prefix":
        import torch
        from peft import PrefixTuningConfig

        try:  # a two-token probe: unsupported attention layouts (e.g. MLA) fail here, not mid-run
            wrapped = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=cfg.prefix_tokens,
                                                               task_type="CAUSAL_LM"))
            with torch.no_grad():
                wrapped(input_ids=torch.tensor([[model.config.bos_token_id or 0] * 2]))
            return wrapped
        except Exception as e:  # peft/transformers raise several types for unsupported layouts
            raise UserError(f"prefix tuning does not work on this {model.config.model_type} model "
                            f"({type(e).__name__}: {str(e)[:120]})", "use --method lora, dora or ia3") from None
    targets = resolve(model, cfg.lora.targets)
    if cfg.method == "ia3":
        from peft import IA3Config

        ffn = [t for t in targets if t.endswith("down_proj")]
        peft_cfg = IA3Config(target_modules=targets, feedforward_modules=ffn, task_type="CAUSAL_LM")
    else:
        from peft import LoraConfig

        experts = _experts(model, cfg)
        peft_cfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=targets, target_parameters=experts or None,
                              use_dora=cfg.method == "dora", task_type="CAUSAL_LM")
    init = getattr(cfg.model, "init_from", None)
    if init and (Path(init) / "adapter_config.json").exists():  # warm start from a previous adapter
        from peft import PeftModel

        with exact_targets(model):
            wrapped = PeftModel.from_pretrained(model, init, is_trainable=True)
        check_adapted(wrapped, targets, marker="ia3_l" if cfg.method == "ia3" else "lora_A")
        return wrapped
    notes = [] if cfg.method == "ia3" else portability(peft_cfg, model, targets, experts)
    with exact_targets(model):
        wrapped = get_peft_model(model, peft_cfg)
    check_adapted(wrapped, targets, marker="ia3_l" if cfg.method == "ia3" else "lora_A")
    wrapped.dsft_notes = notes
    if cfg.method != "ia3" and cfg.lora.experts:
        from dsft.train.targets import adapted_experts

        layers = [n for n, _ in model.named_modules() if n.endswith("mlp.experts")]
        if adapted_experts(wrapped) != sorted(layers):
            raise RuntimeError(f"peft adapted experts {adapted_experts(wrapped)}, expected {layers}")
    return wrapped


def portability(peft_cfg, model, targets: list[str], experts: list[str]) -> list[str]:
    """What to tell the user when plain PEFT would load this adapter onto other modules than it
    trains (see targets.plain_peft_targets); nothing when it loads as trained."""
    import peft

    from dsft.train.targets import plain_peft_targets

    modules, params = plain_peft_targets(peft_cfg, model)
    lost = sorted(set(targets) - modules)
    extra = sorted(params - set(experts))
    if not lost and not extra:
        return []
    shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
    return [f"plain PEFT ({peft.__version__}) would load this adapter onto other modules than it trains: on "
            f"{model.config.model_type} it drops {len(lost)} of {len(targets)} target modules ({shown})"
            + (f" and adapts {', '.join(extra)} instead" if extra else "")
            + ". dsft eval/serve and a merged `dsft export RUN` use it exactly; for an adapter that plain "
            "PEFT loads as trained, set lora.targets: attention"]


def _experts(model, cfg) -> list[str]:
    """Fused routed-expert parameters to adapt when `lora.experts` is set."""
    if not cfg.lora.experts:
        return []
    from dsft.train.targets import expert_parameters

    if cfg.method == "dora":
        raise UserError("DoRA cannot adapt fused MoE expert weights", "use --method lora, or drop lora.experts")
    if cfg.lora.dropout:
        raise UserError(f"lora.dropout is {cfg.lora.dropout}; peft adapts fused expert weights only without dropout",
                        "set lora.dropout: 0 together with lora.experts")
    return expert_parameters(model)
