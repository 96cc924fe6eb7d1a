"""Training: targets, config, batching, accumulation invariance, and an end-to-end run + eval."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_dsft
from dsft.errors import UserError
from dsft.train import config as cfgmod
from dsft.train.batching import Example, collate, length_grouped_batches
from dsft.train.targets import check_adapted, exact_targets, resolve


@pytest.fixture(scope="module")
def tiny_net(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model)


def test_mla_preset_targets_dense_and_shared_mlps_not_experts_or_router(tiny_net):
    names = resolve(tiny_net)
    assert "model.layers.0.mlp.gate_proj" in names and "model.layers.1.mlp.shared_experts.up_proj" in names
    assert "model.layers.1.self_attn.kv_a_proj_with_mqa" in names
    assert not any(".experts." in n or n.endswith("mlp.gate") for n in names)


def test_guide_targets_on_mla_fail_loudly(tiny_net):
    with pytest.raises(UserError, match="k_proj, v_proj match nothing") as info:
        resolve(tiny_net, ["q_proj", "k_proj", "v_proj"])
    assert "kv_b_proj" in info.value.fix


def test_peft_adapts_exactly_what_was_asked(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(tiny_model)
    names = resolve(net)
    with exact_targets(net):
        wrapped = get_peft_model(net, LoraConfig(r=4, target_modules=names, task_type="CAUSAL_LM"))
    check_adapted(wrapped, names)
    assert net.config.model_type == "deepseek_v3"


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(UserError, match="training.epochs"):
        cfgmod.load(None, {"model.name_or_path": "m", "data.train": ["x"], "output.dir": "o", "training.epochs": -1})
    (tmp_path / "c.yaml").write_text("model: {name_or_path: m}\ndata: {train: [x]}\noutput: {dir: o}\nbogus: 1\n")
    with pytest.raises(UserError, match="bogus"):
        cfgmod.load(tmp_path / "c.yaml")


def test_collate_pads_with_pad_id_and_ignores_pads():
    batch, pads = collate([Example([5, 6, 7], [-100, 6, 7]), Example([8], [8])], pad_id=2)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]] and pads == 2


def test_length_grouping_is_deterministic_and_tight():
    lengths = [10, 500, 12, 480, 11, 490, 13, 470]
    batches = length_grouped_batches(lengths, 4, seed=0, epoch=0)
    assert batches == length_grouped_batches(lengths, 4, seed=0, epoch=0)
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [[10, 11, 12, 13], [470, 480, 490, 500]]


def test_gradient_accumulation_does_not_change_the_step(tiny_model, tiny_tokenizer):
    """One step over 4 examples == the same step split into 2 micro-batches of 2."""
    from transformers import AutoModelForCausalLM

    from dsft.train.trainer import _loss_sum

    examples = [Example(list(range(10, 10 + n)), [-100] * 3 + list(range(13, 10 + n))) for n in (8, 12, 9, 15)]
    grads = []
    for split in ([examples], [examples[:2], examples[2:]]):
        torch.manual_seed(0)
        net = AutoModelForCausalLM.from_pretrained(tiny_model)
        batches = [collate(part, tiny_tokenizer.pad_token_id)[0] for part in split]
        supervised = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for b in batches:
            loss, _ = _loss_sum(net, b)
            (loss / supervised).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.slow
def test_train_then_eval_end_to_end(tmp_path, tiny_model):
    run_dsft("data", "generate", "-n", "80", "--seed", "1", "--out", tmp_path / "train.jsonl", check=0)
    run_dsft("data", "generate", "-n", "20", "--seed", "2", "--out", tmp_path / "eval.jsonl", check=0)
    proc = run_dsft("train", "--model", tiny_model, "--train", tmp_path / "train.jsonl", "--out", tmp_path / "run",
                    "--epochs", "2", check=0)
    assert "pad fraction" in proc.stderr
    run = tmp_path / "run"
    assert (run / "model.safetensors").exists() and (run / "config.yaml").exists()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < lines[0]["loss"] and "eval_loss" in lines[-1]
    summary = json.loads(run_dsft("eval", "--model", run, "--data", tmp_path / "eval.jsonl", "--json", check=0).stdout)
    assert summary["n"] == 20 and {"parse_rate", "tool_name_accuracy", "tool_args_exact_match"} <= set(summary)
    proc = run_dsft("train", "--model", tiny_model, "--train", tmp_path / "train.jsonl", "--out", run, check=2)
    assert "already exists" in proc.stderr
