"""Which modules LoRA adapts, resolved from the model's own modules, and checked after wrapping.

Presets are per architecture. Names are resolved to full module paths before peft sees them,
because peft matches bare suffixes and rewrites some on MoE models: on deepseek_v3,
`gate_proj/up_proj/down_proj` become the fused routed experts while the dense first layer and
the shared experts are left untouched (measured with peft 0.21). A requested name that matches
nothing is an error listing the names that exist: the guide's `q_proj/k_proj/v_proj` on an MLA
model fails loudly instead of training half a model.
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from dsft.errors import UserError

PRESETS: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    # MLA: q_proj when q_lora_rank is null (V2-Lite), else q_a_proj/q_b_proj. Dense and shared-expert MLPs.
    "deepseek_v3": ["q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                    "gate_proj", "up_proj", "down_proj"],
}
PRESETS["deepseek_v2"] = PRESETS["deepseek_v3"]
# V4: the main attention's low-rank query, shared-KV MQA projection and output (o_a_proj is a grouped
# linear that plain LoRA would apply across groups: left out) and the shared experts; the CSA/HCA
# compressors and the indexer keep their weights (`PRESET_SKIPS`).
PRESETS["deepseek_v4"] = ["q_a_proj", "q_b_proj", "kv_proj", "o_b_proj", "gate_proj", "up_proj", "down_proj"]
PRESET_SKIPS: dict[str, tuple[str, ...]] = {"deepseek_v4": (".compressor.",)}
PRESETS["mistral"] = PRESETS["llama"]
NEVER = ("mlp.gate",)  # the MoE router is never trained


def linear_names(model: nn.Module) -> dict[str, list[str]]:
    """Suffix -> full names of every nn.Linear, routed experts excluded (they are fused 3-D weights)."""
    out: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and ".experts." not in f".{name}." and not name.endswith(NEVER):
            out.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    out.pop("lm_head", None)
    return out


VLLM_UNAPPLIED = ("kv_b_proj",)  # LoRA vLLM loads but never applies (vLLM issue #48974, MLA)
ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
             "kv_proj", "o_b_proj"}


def resolve(model: nn.Module, requested: list[str] | str = "auto") -> list[str]:
    """Full module names for LoRA. `auto` = the architecture's preset, keeping what exists;
    `attention` = that preset's attention projections; `vllm` = the preset less what vLLM does not
    apply (MLA's kv_b_proj)."""
    available = linear_names(model)
    arch = getattr(model.config, "model_type", "")
    if requested in ("auto", "attention", "vllm"):
        if arch not in PRESETS:
            raise UserError(f"no LoRA preset for architecture {arch!r}",
                            f"name target modules with --targets; this model has: {', '.join(sorted(available))}")
        keep = {"auto": lambda t: True, "attention": lambda t: t in ATTENTION,
                "vllm": lambda t: t not in VLLM_UNAPPLIED}[requested]
        wanted = [t for t in PRESETS[arch] if t in available and keep(t)]
        skips = PRESET_SKIPS.get(arch, ())
        return sorted(name for t in wanted for name in available[t] if not any(s in f".{name}." for s in skips))
    else:
        wanted = list(requested)
        missing = [t for t in wanted if t not in available]
        if missing:
            raise UserError(f"target modules {', '.join(missing)} match nothing in this {arch} model",
                            f"choose among: {', '.join(sorted(available))} (or use 'auto')")
    return sorted(name for t in wanted for name in available[t])


def expert_parameters(model: nn.Module) -> list[str]:
    """Suffixes of the fused 3-D routed-expert weights (e.g. mlp.experts.gate_up_proj), for peft's
    `target_parameters`; a UserError when the model has none."""
    found = sorted({name.split(".", 3)[-1] for name, p in model.named_parameters()
                    if ".experts." in name and p.dim() == 3})
    if not found:
        raise UserError(f"lora.experts is set but this {getattr(model.config, 'model_type', '')} model has no "
                        "fused routed experts", "drop lora.experts")
    return found


def check_adapted(peft_model: nn.Module, expected: list[str], marker: str = "lora_A") -> None:
    """After wrapping: exactly the requested modules carry adapter weights (`marker`), nothing else."""
    got = sorted(name.removeprefix("base_model.model.") for name, m in peft_model.named_modules()
                 if hasattr(m, marker) and not name.endswith("base_layer") and type(m).__name__ != "ParamWrapper")
    if got != sorted(expected):
        extra, lost = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
        raise RuntimeError(f"peft adapted other modules than asked: extra {extra[:5]}, missing {lost[:5]}")


def adapted_experts(peft_model: nn.Module) -> list[str]:
    """Modules whose fused expert weights carry LoRA (peft's ParamWrapper), outermost only."""
    return sorted(name.removeprefix("base_model.model.") for name, m in peft_model.named_modules()
                  if type(m).__name__ == "ParamWrapper" and not name.endswith("base_layer"))


@contextmanager
def exact_targets(model: nn.Module):
    """Stop peft 0.21 from remapping `*.gate_proj/up_proj/down_proj` on deepseek_v2/v3 (0.22 keeps
    full names of nn.Linear targets; the guard is harmless there).

    peft converts those names to the fused routed experts (a v4->v5 checkpoint compatibility
    step it applies by `config.model_type`), which drops the dense and shared-expert MLPs we
    asked for. Shadowing `model_type` on this config instance while peft wraps or loads the
    adapter disables that step only; `check_adapted` verifies the result every time.
    """
    config = model.config
    original = config.model_type
    config.model_type = f"{original}+dsft-exact-targets"
    try:
        yield model
    finally:
        config.model_type = original


def plain_peft_targets(peft_config, model: nn.Module) -> tuple[set[str], set[str]]:
    """(modules, parameters) that plain `PeftModel.from_pretrained` will adapt from this config on
    this model: peft (0.21, transformers 5) renames some targets by `model_type` when it loads (on
    deepseek_v2/v3 every `*.gate_proj/up_proj/down_proj` becomes the fused routed experts), so an
    adapter can load elsewhere onto other modules than it was trained on. peft's own conversion is
    run on a copy, so the answer is what that peft does."""
    import copy

    cfg = copy.deepcopy(peft_config)
    try:
        from peft.utils.transformers_weight_conversion import (
            convert_peft_config_for_transformers,
            get_model_conversion_mapping,
        )
    except ImportError:  # a peft without load-time conversion loads what it is given
        return set(cfg.target_modules or ()), set(cfg.target_parameters or ())
    convert_peft_config_for_transformers(cfg, model=model, conversions=get_model_conversion_mapping(model))
    return set(cfg.target_modules or ()), set(cfg.target_parameters or ())
