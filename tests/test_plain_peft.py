"""Issue 14: a dsft adapter loads in plain transformers + peft (a fresh interpreter that never
imports dsft) and gives dsft's logits; where plain peft would load it onto other modules (its
load-time renaming on DeepSeek-V2/V3 MLPs), dsft says so at training time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import run_dsft

PLAIN = r"""
import json, sys, warnings
import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

run, out = sys.argv[1:]
base = json.load(open(f"{run}/adapter_config.json"))["base_model_name_or_path"]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), run)
model.eval()
with torch.no_grad():
    logits = model(input_ids=torch.tensor([list(range(5, 45))])).logits
save_file({"logits": logits.contiguous()}, out)
adapted = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules()
                 if hasattr(m, "lora_A") and not n.endswith("base_layer"))
assert not any(name.split(".")[0] == "dsft" for name in sys.modules), "plain means without dsft"
print(json.dumps({"warnings": [str(w.message) for w in caught], "adapted": adapted}))
"""


def _portable_on_this_peft() -> bool:
    """peft 0.21 renamed every `*.gate_proj/up_proj/down_proj` on deepseek_v2/v3 onto the fused
    routed experts when loading; peft 0.22 keeps a target that names nn.Linear modules (its #3711,
    #3945), so the full module names dsft writes load as trained."""
    import peft
    from packaging.version import Version

    return Version(peft.__version__) >= Version("0.22")


@pytest.mark.slow
@pytest.mark.parametrize("arch, targets, portable", [
    ("deepseek_v3", "attention", True),
    ("deepseek_v2", "attention", True),
    ("llama", "auto", True),
    ("qwen2", "auto", True),
    ("deepseek_v3", "auto", _portable_on_this_peft()),  # dense/shared MLPs: the rename above
])
def test_an_adapter_loads_in_plain_peft_with_dsfts_logits(tmp_path, arch, targets, portable):
    """dsft's note (run.json `notes`, the warning) says exactly when plain peft loads the adapter
    elsewhere; where it says nothing, plain peft loads the trained modules and gives dsft's logits."""
    from safetensors.torch import load_file

    from dsft.eval.tooluse import load_for_eval

    run_dsft("model", "tiny", "--arch", arch, "--out", tmp_path / "base", check=0)
    run_dsft("data", "generate", "-n", "24", "--seed", "3", "--out", tmp_path / "d.jsonl", check=0)
    (tmp_path / "cfg.yaml").write_text(f"lora: {{targets: {targets}}}\n")
    err = run_dsft("train", tmp_path / "cfg.yaml", "--model", tmp_path / "base", "--train", tmp_path / "d.jsonl",
                   "--method", "lora", "--epochs", "1", "--lr", "1e-2", "--out", tmp_path / "run", check=0).stderr
    notes = json.loads((tmp_path / "run" / "run.json").read_text())["notes"]
    assert bool(notes) is not portable and ("plain PEFT" in " ".join(err.split())) is not portable

    plain = subprocess.run([sys.executable, "-c", PLAIN, str(tmp_path / "run"), str(tmp_path / "plain.safetensors")],
                           capture_output=True, text=True, timeout=300)
    trained = json.loads((tmp_path / "run" / "adapter_config.json").read_text())["target_modules"]
    if not portable:  # what the warning says: plain peft does not load it as trained (with dropout it refuses)
        refused = plain.returncode != 0 and "lora_dropout" in plain.stderr
        assert refused or json.loads(plain.stdout.splitlines()[-1])["adapted"] != sorted(trained), plain.stderr
        return
    assert plain.returncode == 0, plain.stderr
    said = json.loads(plain.stdout.splitlines()[-1])
    assert said["adapted"] == sorted(trained), "plain peft adapts exactly the trained modules"
    assert not [w for w in said["warnings"] if "missing" in w.lower() or "unexpected" in w.lower()]
    assert "missing" not in plain.stderr.lower() and "unexpected" not in plain.stderr.lower()
    model, _ = load_for_eval(str(tmp_path / "run"))
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([list(range(5, 45))])).logits
    theirs = load_file(tmp_path / "plain.safetensors")["logits"]
    lora_moved = any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert lora_moved and (ours - theirs).abs().max().item() <= 1e-4
