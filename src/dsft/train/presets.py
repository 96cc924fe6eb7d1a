"""Defaults chosen by measurement, applied when the user does not say otherwise.

The tiny embedded model is random-initialised: LoRA on a random base has little to adapt, so
its preset is a full finetune. Measured on the 2-core dev VM (1,200 generated LightDom examples,
~26 tokens each with the tiny tokenizer): full, lr 2e-3, 20 epochs -> 65 s, held-out tool-name
accuracy 1.00 and exact arguments 0.92 (base 0.10 / 0.10); 3 epochs at lr 1e-3 -> 0.63 / 0.07.
Real models keep LoRA with the guide's hyperparameters (section 5.2.1).
"""

from __future__ import annotations

from typing import Any

TINY_MARKER = "dsft_tiny"  # written into the tiny model's config by `dsft model tiny`

TINY: dict[str, Any] = {"method": "full", "training.learning_rate": 2e-3, "training.epochs": 20,
                        "training.batch_size": 8, "data.max_length": 512}
LORA: dict[str, Any] = {"method": "lora", "training.learning_rate": 2e-4, "training.epochs": 3,
                        "lora.r": 16, "lora.alpha": 32}


def for_model(name_or_path: str) -> dict[str, Any]:
    """The preset for a model: TINY for dsft's own tiny models, LORA otherwise."""
    import json
    from pathlib import Path

    config = Path(name_or_path) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get(TINY_MARKER):
        return dict(TINY)
    return dict(LORA)
