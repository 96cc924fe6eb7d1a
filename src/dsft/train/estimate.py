"""`dsft estimate`: training memory from a model's config, before anything is downloaded or loaded.

Parameters are counted exactly by instantiating the architecture on the meta device (no memory).
Then, per component (bytes):
- weights: params x 2 (bf16), or for QLoRA NF4 0.5 + double-quantised constants (~0.127 bits
  per param); fused routed experts of MoE models are not quantised by bitsandbytes and stay bf16;
- trainable params: LoRA r x (in + out) per adapted Linear, or every param for a full finetune;
- gradients: trainable x 2 (bf16); a full finetune also keeps fp32 master weights (x 4);
- optimizer: AdamW two fp32 states (x 8), or paged 8-bit AdamW for QLoRA (x 2);
- activations: per layer and token s*b*h*(34 + 5*a*s/h) bytes without checkpointing
  (Korthikanti et al., 2022); with checkpointing only each layer's input (2*s*b*h) plus one
  layer's full activations;
- logits: b x s x vocab in fp32, and their gradient.
These are estimates for one GPU without offloading; allocator overhead and CUDA context add
about 1 GB in practice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dsft.errors import UserError

GB = 1024**3


@dataclass
class Estimate:
    model: str
    method: str
    params: int
    trainable: int
    rows: dict[str, float]  # component -> bytes
    notes: list[str]

    @property
    def total(self) -> float:
        return sum(self.rows.values())


def _meta_model(name_or_path: str, trust_remote_code: bool = False):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from dsft.model.locate import locate, offline_fix
    from dsft.model.shapes import shipped

    config = None if Path(name_or_path).expanduser().is_dir() else shipped(name_or_path)
    if config is None:  # a folder, or an id dsft ships no shape for: its own config.json
        name_or_path = locate(name_or_path, "--model")
        try:
            config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        except Exception as e:  # OSError/ValueError for missing or unreachable configs
            raise UserError(f"cannot read the config of {name_or_path!r}: {str(e).splitlines()[0]}",
                            "give a model folder holding config.json" if Path(name_or_path).is_dir()
                            else offline_fix(name_or_path)) from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code), config


def estimate(name_or_path: str, method: str = "qlora", seq_len: int = 4096, batch: int = 4, rank: int = 16,
             checkpointing: bool = True, model=None, precision: str = "bf16", targets="auto") -> Estimate:
    """`precision` fp32: the run keeps weights, gradients and activations in float32 (dsft on a CPU),
    twice the bf16 figures, with no separate master copy. `model` (a loaded or meta model) and
    `targets` (the run's lora.targets) make it the estimate of one configured run."""
    from dsft.train.targets import resolve

    model, config = (model, model.config) if model is not None else _meta_model(name_or_path)
    params = sum(p.numel() for p in model.parameters())
    expert_params = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    notes = []
    if method == "full":
        trainable = params
    else:
        names = set(resolve(model, targets))
        trainable = sum(rank * (m.in_features + m.out_features) for n, m in model.named_modules()
                        if n in names and isinstance(m, nn.Linear))
    if method == "qlora":
        weights = (params - expert_params) * (0.5 + 0.127 / 8) + expert_params * 2
        if expert_params:
            notes.append(f"{expert_params / 1e9:.2f}B routed-expert parameters are fused 3-D weights that bitsandbytes "
                         "does not quantise: counted at bf16")
    else:
        weights = params * (4 if precision == "fp32" else 2)
    width = 4 if precision == "fp32" else 2
    h, layers = config.hidden_size, config.num_hidden_layers
    heads, vocab = config.num_attention_heads, config.vocab_size
    s, b = seq_len, batch
    per_layer = s * b * h * (34 + 5 * heads * s / h) * width / 2
    activations = (layers * width * s * b * h + per_layer) if checkpointing else layers * per_layer
    rows = {
        "weights": weights,
        f"trainable params ({precision})": trainable * width if method != "full" else 0,
        "gradients": trainable * width,
        "master weights (fp32)": params * 4 if method == "full" and precision != "fp32" else 0,
        "optimizer states": trainable * (2 if method == "qlora" else 8),
        f"activations ({'checkpointed' if checkpointing else 'no checkpointing'})": activations,
        "logits + grad (fp32)": 2 * b * s * vocab * 4,
    }
    return Estimate(name_or_path, method, params, trainable, {k: v for k, v in rows.items() if v}, notes)
