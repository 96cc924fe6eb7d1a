"""Training: targets, config, batching, accumulation invariance, and an end-to-end run + eval."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import yaml
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


@pytest.mark.parametrize("requested, said", [
    ("preset", None),  # full module names: peft 0.22 keeps linear targets; 0.21 dropped the MLPs
    (["q_a_proj", "gate_proj", "up_proj", "down_proj"], "adapts down_proj, gate_up_proj instead"),
    (["q_a_proj", "kv_b_proj"], ""),
])
def test_portability_says_what_plain_peft_would_load_instead(tiny_net, requested, said):
    """`portability` runs peft's own load-time conversion on a copy of the config: short MLP names
    on deepseek_v3 make plain peft adapt the fused routed experts too (every peft with the
    conversion); attention names load as trained."""
    import peft
    from packaging.version import Version
    from peft import LoraConfig

    from dsft.train.methods import portability

    names = resolve(tiny_net) if requested == "preset" else requested
    notes = portability(LoraConfig(r=4, target_modules=names, task_type="CAUSAL_LM"), tiny_net, names, [])
    if said is None:
        said = "" if Version(peft.__version__) >= Version("0.22") else "drops 6 of 16 target modules"
    assert (said in " ".join(notes)) and bool(notes) is bool(said), notes
    assert tiny_net.config.model_type == "deepseek_v3"


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

    from dsft.train.loss import loss_sum

    examples = [Example(list(range(10, 10 + n)), [-100] * 3 + list(range(13, 10 + n))) for n in (8, 12, 9, 15)]
    grads = []
    for split in ([examples], [examples[:2], examples[2:]]):
        torch.manual_seed(0)
        net = AutoModelForCausalLM.from_pretrained(tiny_model)
        batches = [collate(part, tiny_tokenizer.pad_token_id)[0] for part in split]
        supervised = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for b in batches:
            loss, _ = loss_sum(net, b)
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
    assert "holds a finished run" in proc.stderr and "--overwrite" in proc.stderr


def test_padding_in_a_batch_does_not_change_an_examples_logits(tiny_net):
    """Length-grouped batches pad on the right with attention 0: an example's logits are the same
    alone and in a padded batch, so no example sees another or the padding."""
    short, long_ = list(range(10, 22)), list(range(30, 70))
    batch, _ = collate([Example(short, short), Example(long_, long_)], pad_id=2)
    with torch.no_grad():
        together = tiny_net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        alone = tiny_net(input_ids=torch.tensor([short])).logits
    assert torch.allclose(together[0, :len(short)], alone[0], atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_twins_build_and_take_a_lora_step(arch, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dsft.model.tiny import TinySpec, build

    path = build(tmp_path / arch, TinySpec(arch=arch, vocab_size=600, hidden_size=32))
    net = AutoModelForCausalLM.from_pretrained(path)
    assert net.config.model_type == arch
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(path)) <= net.config.vocab_size, "every token has an embedding"
    names = resolve(net)
    assert any(n.endswith("self_attn.k_proj") for n in names) and any(n.endswith("mlp.down_proj") for n in names)
    wrapped = get_peft_model(net, LoraConfig(r=4, target_modules=names, task_type="CAUSAL_LM"))
    check_adapted(wrapped, names)
    ids = torch.tensor([list(range(5, 25))])
    wrapped(input_ids=ids, labels=ids).loss.backward()


def test_tiny_model_is_deterministic_for_a_seed(tmp_path):
    from safetensors.torch import load_file

    from dsft.model.tiny import TinySpec, build

    spec = TinySpec(vocab_size=600, hidden_size=32)
    a, b = build(tmp_path / "a", spec), build(tmp_path / "b", spec)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("method,marker", [("lora", "lora_A"), ("dora", "lora_magnitude_vector"),
                                           ("qlora", "lora_A"), ("ia3", "ia3_l")])
def test_methods_wrap_the_resolved_targets_and_train(method, marker, tiny_model):
    from dsft.train.methods import quantization_config, wrap
    from dsft.train.trainer import load_model

    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "data.train": ["x"], "output.dir": "o",
                             "method": method})
    model, _ = load_model(cfg)
    assert (quantization_config(method) is not None) == (method == "qlora")
    wrapped = wrap(model, cfg)
    assert any(hasattr(m, marker) for m in wrapped.modules())
    wrapped.train()
    ids = torch.tensor([list(range(5, 25))])
    wrapped(input_ids=ids, labels=ids).loss.backward()
    assert any(p.grad is not None for p in wrapped.parameters() if p.requires_grad)


def test_prefix_tuning_on_mla_is_a_clear_error(tiny_model):
    from dsft.train.methods import wrap
    from dsft.train.trainer import load_model

    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "data.train": ["x"], "output.dir": "o",
                             "method": "prefix"})
    with pytest.raises(UserError, match="prefix tuning does not work on this deepseek_v3 model"):
        wrap(load_model(cfg)[0], cfg)


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model):
    """Per-step losses after `kill -9` + `--resume` equal those of a run that was never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dsft("data", "generate", "-n", "120", "--seed", "4", "--out", tmp_path / "d.jsonl", check=0)
    common = ["--model", tiny_model, "--train", tmp_path / "d.jsonl", "--epochs", "3", "--batch-size", "4",
              "--lr", "1e-3", "--time-budget", "none"]  # a fitted budget would differ between the runs
    (tmp_path / "cfg.yaml").write_text("training: {log_every: 1, eval_every: 1000}\n")
    run_dsft("train", tmp_path / "cfg.yaml", *common, "--out", tmp_path / "a", check=0)
    reference = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]

    proc = subprocess.Popen([sys.executable, "-m", "dsft", "train", str(tmp_path / "cfg.yaml"), *map(str, common),
                             "--out", str(tmp_path / "b"), "--save-every", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 13:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(metrics.read_text().splitlines()) < len(reference), "the run was killed before it finished"
    run_dsft("train", "--resume", tmp_path / "b", check=0)
    resumed = [json.loads(x)["loss"] for x in metrics.read_text().splitlines()]
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(range(1, len(reference) + 1))
    assert resumed == pytest.approx(reference, abs=1e-6)
    assert (tmp_path / "b" / "loss.png").exists() and (tmp_path / "b" / "README.md").exists()


def test_estimate_counts_params_and_lora_exactly(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dsft.train.estimate import estimate

    est = estimate(str(tiny_model), "lora", seq_len=256, batch=2, rank=16)
    net = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert est.params == sum(p.numel() for p in net.parameters())
    names = resolve(net)
    with exact_targets(net):
        wrapped = get_peft_model(net, LoraConfig(r=16, target_modules=names, task_type="CAUSAL_LM"))
    assert est.trainable == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    full, qlora = (estimate(str(tiny_model), m, seq_len=256, batch=2) for m in ("full", "qlora"))
    assert full.total > est.total > qlora.rows["weights"] and qlora.rows["weights"] < est.rows["weights"]
    assert qlora.notes, "MoE models say their fused experts are not quantised"
    data = json.loads(run_dsft("estimate", "--model", tiny_model, "--method", "full", "--json", check=0).stdout)
    assert data["params"] == est.params and data["total_gb"] > 0


def test_curriculum_phases_run_in_order_with_their_own_epochs(tmp_path, tiny_model, tiny_tokenizer):
    from dsft.train.trainer import plan

    run_dsft("data", "generate", "-n", "30", "--seed", "1", "--out", tmp_path / "basic.jsonl", check=0)
    run_dsft("data", "generate", "-n", "20", "--seed", "2", "--out", tmp_path / "tools.jsonl", check=0)
    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "output.dir": "o", "data.val_ratio": 0.0,
                             "data.copy_augment": 0, "training.batch_size": 5, "data.curriculum": [
                                 {"name": "basics", "train": [str(tmp_path / "basic.jsonl")], "epochs": 2},
                                 {"name": "tools", "train": [str(tmp_path / "tools.jsonl")], "epochs": 1.5}]})
    p = plan(cfg, tiny_tokenizer)
    assert p.phase_of_batch == ["basics"] * 12 + ["tools"] * 6
    assert all(i < 30 for b in p.micro[:12] for i in b) and all(i >= 30 for b in p.micro[12:] for i in b)
    assert p == plan(cfg, tiny_tokenizer), "the plan is a pure function of the config"


@pytest.mark.slow
def test_export_script_runs_standalone(tmp_path, tiny_model):
    import subprocess
    import sys

    run_dsft("data", "generate", "-n", "24", "--seed", "3", "--out", tmp_path / "d.jsonl", check=0)
    run_dsft("train", "--model", tiny_model, "--train", tmp_path / "d.jsonl", "--out", tmp_path / "run",
             "--method", "lora", "--epochs", "1", check=0)
    run_dsft("export-script", tmp_path / "run", "--out", tmp_path / "script", check=0)
    script = (tmp_path / "script" / "train.py").read_text()
    assert "import dsft" not in script and "model.layers.0.self_attn.kv_b_proj" in script
    assert "peft==" in (tmp_path / "script" / "requirements.txt").read_text()
    proc = subprocess.run([sys.executable, "train.py"], cwd=tmp_path / "script", capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert steps and all(math.isfinite(s["loss"]) for s in steps)
    assert (tmp_path / "script" / "out" / "adapter_config.json").exists()


@pytest.mark.parametrize("family, refused", [("deepseek_v4", True), ("deepseek_v32", True), ("deepseek_coder", False)])
def test_export_script_refuses_a_family_without_a_template(tmp_path, family, refused):
    """V3.2 and V4 have no Jinja template to render the standalone script's data with."""
    from dsft.errors import UserError
    from dsft.train.export_script import export

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name_or_path": "m"}, "data": {"train": ["d.jsonl"]},
                                                     "output": {"dir": str(run)}, "method": "full"}))
    (run / "tokenizer_config.json").write_text(json.dumps({"chat_family": family}))  # as `dsft train` saves it
    if refused:
        with pytest.raises(UserError, match=f"speaks {family}, which has no Jinja chat template"):
            export(run, tmp_path / "script")
    else:
        assert [p.name for p in export(run, tmp_path / "script")] == ["train.py", "requirements.txt"]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, tiny_model):
    """Issue 13: Ctrl-C ends `dsft train` after the current step with a checkpoint and the resume
    command; --resume then finishes the run; a run killed before any checkpoint restarts in place."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from dsft.train import checkpoint

    run_dsft("data", "generate", "-n", "120", "--seed", "4", "--out", tmp_path / "d.jsonl", check=0)
    args = [sys.executable, "-m", "dsft", "train", "--model", str(tiny_model), "--train", str(tmp_path / "d.jsonl"),
            "--epochs", "2", "--time-budget", "none"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}

    def started(run, signum):
        proc = subprocess.Popen([*args, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "metrics.jsonl").exists():
            time.sleep(0.2)
        while time.monotonic() < deadline and len((run / "metrics.jsonl").read_text().splitlines()) < 3:
            time.sleep(0.2)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err

    rc, out, err = started(tmp_path / "run", signal.SIGINT)
    assert rc == 130 and "Traceback" not in err, err
    assert re.search(r"step \d+/\d+ loss [\d.]+", err), "redirected output still shows progress lines"
    saved, said = checkpoint.latest(tmp_path / "run"), " ".join((out + err).split())
    assert saved is not None and f"checkpoint {saved}" in said
    assert f"dsft train --resume {tmp_path / 'run'}" in said
    stopped_at = int(saved.name.removeprefix("step-"))
    run_dsft("train", "--resume", tmp_path / "run", check=0)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["resumed"] and info["steps"] > stopped_at
    finished = info["steps"]

    rc, _, _ = started(tmp_path / "killed", signal.SIGKILL)  # a crash: no checkpoint, no message
    assert rc == -signal.SIGKILL and checkpoint.latest(tmp_path / "killed") is None
    run_dsft("train", "--resume", tmp_path / "killed", check=0)
    info = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert not info["resumed"] and info["steps"] == finished, "started again from step 0 and ran the whole plan"
    whole = json.loads((tmp_path / "run" / "run.json").read_text())
    assert whole["tokens"] == info["tokens"], "the resumed run's figures cover the whole run, not its last segment"
    assert whole["seconds"] > info["seconds"] * 0.5

    # a finished run says so and is left as it is; starting it again names both ways out
    before = {f: (tmp_path / "run" / f).read_bytes() for f in ("run.json", "metrics.jsonl")}
    said = " ".join(run_dsft("train", "--resume", tmp_path / "run", check=0).stderr.split())
    assert "is finished" in said and f"{finished} steps" in said
    assert before == {f: (tmp_path / "run" / f).read_bytes() for f in before}
    said = " ".join(run_dsft("train", *args[4:], "--out", tmp_path / "run", check=2).stderr.split())
    assert "holds a finished run" in said and "--overwrite" in said
    run_dsft("train", *args[4:], "--out", tmp_path / "run", "--overwrite", check=0)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["resumed"] is False
    mine = tmp_path / "mine"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("keep me")
    said = " ".join(run_dsft("train", *args[4:], "--out", mine, "--overwrite", check=2).stderr.split())
    assert "not a dsft run folder" in said and (mine / "notes.txt").read_text() == "keep me"

    # checkpoints by the clock (default every 5 minutes; here every 0.06 s): a crash loses at most that
    (tmp_path / "often.yaml").write_text("training: {save_minutes: 0.001, log_every: 1}\n")
    args.insert(4, str(tmp_path / "often.yaml"))
    rc, _, _ = started(tmp_path / "often", signal.SIGKILL)
    assert rc == -signal.SIGKILL and checkpoint.latest(tmp_path / "often") is not None
    run_dsft("train", "--resume", tmp_path / "often", check=0)
    assert json.loads((tmp_path / "often" / "run.json").read_text())["resumed"]


def test_routed_experts_are_opt_in_and_checked(tiny_model):
    from dsft.train.methods import wrap
    from dsft.train.trainer import load_model

    base = {"model.name_or_path": str(tiny_model), "data.train": ["x"], "output.dir": "o", "method": "lora"}
    cfg = cfgmod.load(None, {**base, "lora.experts": True, "lora.dropout": 0.0})
    wrapped = wrap(load_model(cfg)[0], cfg)
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert any("mlp.experts" in n for n in trainable) and not any(n.endswith("mlp.gate.weight") for n in trainable)
    ids = torch.tensor([list(range(5, 25))])
    wrapped(input_ids=ids, labels=ids).loss.backward()
    with pytest.raises(UserError, match="dropout"):
        wrap(load_model(cfg)[0], cfgmod.load(None, {**base, "lora.experts": True}))
    with pytest.raises(UserError, match="DoRA cannot adapt fused MoE expert"):
        wrap(load_model(cfg)[0], cfgmod.load(None, {**base, "method": "dora", "lora.experts": True,
                                                       "lora.dropout": 0.0}))
    plain = cfgmod.load(None, {**base})
    assert not any("mlp.experts" in n for n, p in wrap(load_model(plain)[0], plain).named_parameters()
                   if p.requires_grad), "experts stay frozen unless asked"


def test_report_to_tensorboard_and_mlflow(tmp_path, tiny_model):
    from dsft.train.trainer import train

    run_dsft("data", "generate", "-n", "16", "--seed", "5", "--out", tmp_path / "d.jsonl", check=0)
    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "data.train": [str(tmp_path / "d.jsonl")],
                             "output.dir": str(tmp_path / "run"), "training.epochs": 1, "training.log_every": 1,
                             "training.report_to": ["tensorboard", "mlflow"]})
    train(cfg)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    import mlflow

    mlflow.set_tracking_uri((tmp_path / "run" / "mlruns").resolve().as_uri())
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1 and "loss" in runs[0].data.metrics and runs[0].data.params["method"] == "full"


@pytest.mark.slow
def test_two_processes_equal_one_process_with_accumulation(tmp_path, tiny_model):
    """Data parallel (torchrun, 2 CPU ranks, gloo) takes the same optimizer steps as one process
    accumulating 2 micro-batches: same per-step losses."""
    import subprocess
    import sys

    run_dsft("data", "generate", "-n", "40", "--seed", "6", "--out", tmp_path / "d.jsonl", check=0)
    common = ["--model", tiny_model, "--train", tmp_path / "d.jsonl", "--epochs", "2", "--batch-size", "4",
              "--lr", "1e-3", "--time-budget", "none"]
    (tmp_path / "one.yaml").write_text("training: {log_every: 1, eval_every: 1000, grad_accum: 2}\n")
    (tmp_path / "two.yaml").write_text("training: {log_every: 1, eval_every: 1000, grad_accum: 1}\n")
    run_dsft("train", tmp_path / "one.yaml", *common, "--out", tmp_path / "one", check=0)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "dsft",
                           "train", str(tmp_path / "two.yaml"), *map(str, common), "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = ([json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
                for d in ("one", "two"))
    assert len(one) == len(two) > 3 and two == pytest.approx(one, abs=1e-4)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_gives_the_same_loss(tmp_path, tiny_random_model, method):
    from dsft.train.trainer import train

    # without the copy circuit: Adam turns its float noise on zero-started weights into 1e-4 losses
    run_dsft("data", "generate", "-n", "16", "--seed", "8", "--out", tmp_path / "d.jsonl", check=0)
    losses = []
    for on in (False, True):
        cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_random_model), "data.train": [str(tmp_path / "d.jsonl")],
                                 "output.dir": str(tmp_path / f"run{on}"), "method": method, "training.epochs": 1,
                                 "training.log_every": 1, "training.gradient_checkpointing": on,
                                 "training.time_budget": None, "training.eval_tool_sample": 0})
        train(cfg)
        losses.append([json.loads(x)["loss"] for x in (tmp_path / f"run{on}" / "metrics.jsonl").read_text().splitlines()])
    assert losses[1] == pytest.approx(losses[0], rel=2e-5)  # recomputation reorders float sums: CI saw 1.1e-5


def test_early_stopping_rule():
    from dsft.train.trainer import EarlyStopping

    loss = EarlyStopping("eval_loss", patience=2)
    for step, value in enumerate([3.0, 2.0, 2.5, 2.1], 1):
        loss.see(step, {"eval_loss": value})
    assert loss.stop and loss.report() == {"metric": "eval_loss", "best": 2.0, "best_step": 2, "stopped_early": True}
    acc = EarlyStopping("eval_tool_args_exact_match", patience=1)
    acc.see(1, {"eval_tool_args_exact_match": 0.2})
    acc.see(2, {"eval_tool_args_exact_match": 0.5})
    assert not acc.stop and acc.best == 0.5
    assert EarlyStopping(None, 1).report() is None


def test_tool_accuracy_during_training_and_early_stop(tmp_path, tiny_model):
    """Tool accuracy is a callback the caller hands the trainer (eval/during_training.py); without
    it a config that stops on a tool metric is refused before anything runs."""
    from dsft.eval.during_training import ToolAccuracy
    from dsft.train.trainer import train

    run_dsft("data", "generate", "-n", "40", "--seed", "13", "--out", tmp_path / "d.jsonl", check=0)
    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "data.train": [str(tmp_path / "d.jsonl")],
                             "data.val_ratio": 0.25, "output.dir": str(tmp_path / "run"), "training.epochs": 3,
                             "training.learning_rate": 1e-5, "training.log_every": 1, "training.eval_every": 1,
                             "training.eval_tool_sample": 4, "training.early_stopping_metric": "eval_tool_args_exact_match",
                             "training.early_stopping_patience": 1})
    with pytest.raises(UserError, match="training.early_stopping_metric is 'eval_tool_args_exact_match', which nothing"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    result = train(cfg, callbacks=[ToolAccuracy()])
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "eval_tool_args_exact_match" in lines[0] and "eval_tool_name_accuracy" in lines[0]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["early_stopping"]["stopped_early"] and result.steps == 2 < 12


def test_pad_equal_to_eos_is_replaced_by_a_pad_token_from_the_vocabulary(tiny_tokenizer):
    import copy

    from dsft.train.trainer import ensure_distinct_pad

    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token  # as deepseek-coder ships it
    ensure_distinct_pad(tok, "m")
    assert tok.pad_token == "<｜▁pad▁｜>" and tok.pad_token_id != tok.eos_token_id
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "</s>": 1}, unk_token="a")),
                                   eos_token="</s>", pad_token="</s>")
    with pytest.raises(UserError, match="no pad token distinct from EOS"):
        ensure_distinct_pad(bare, "m")


def test_loss_plot_shows_a_single_evaluation():
    """Issue 13: a run with one evaluation drew no accuracy line (a line needs two points)."""
    import matplotlib.pyplot as plt

    from dsft.train.report import figure

    lines = [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.5, "eval_loss": 1.6, "eval_tool_name_accuracy": 0.5,
                                         "eval_tool_args_exact_match": 0.25}]
    fig = figure(lines)
    drawn = {line.get_label(): line for a in fig.axes for line in a.get_lines()}
    plt.close(fig)
    for label in ("eval loss", "tool names", "exact arguments"):
        assert len(drawn[label].get_xdata()) == 1 and drawn[label].get_marker() not in (None, "None", ""), label


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: with a GPU, QLoRA is what it is for")
def test_qlora_on_cpu_says_once_why_it_is_slow_and_nothing_the_user_cannot_act_on(tmp_path, tiny_model):
    run_dsft("data", "generate", "-n", "24", "--seed", "2", "--out", tmp_path / "d.jsonl", check=0)
    err = run_dsft("train", "--model", tiny_model, "--train", tmp_path / "d.jsonl", "--method", "qlora", "--epochs", "1",
                   "--out", tmp_path / "run", check=0).stderr
    said = " ".join(err.split())
    assert said.count("QLoRA without a CUDA GPU") == 1 and "slower than --method lora" in said
    assert "gemm_4bit_forward" not in err and "FutureWarning" not in err


def test_a_run_that_would_not_fit_in_memory_is_refused_with_a_batch_size_that_fits(tiny_model, monkeypatch):
    """Issue 14: an OOM kill leaves no message; the estimate for this very run is checked first."""
    from transformers import AutoModelForCausalLM

    from dsft.train import memory

    net = AutoModelForCausalLM.from_pretrained(tiny_model)
    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "data.train": ["x.jsonl"], "output.dir": "r",
                             "method": "lora", "training.batch_size": 8})
    need = {b: memory._needed(net, cfg, 1024, b, False) for b in (1, 2, 3, 8)}
    assert need[1] < need[2] < need[3] < need[8]
    monkeypatch.setattr(memory, "free_memory", lambda: (need[2] / memory.HEADROOM * 1.01, "this machine (RAM)"))
    with pytest.raises(UserError) as e:
        memory.check(net, cfg, 1024)
    assert "--batch-size 2 (with training.grad_accum: 4 for the same 8 rows per step)" in e.value.fix
    assert "GB free" in e.value.message
    monkeypatch.setattr(memory, "free_memory", lambda: (need[3] / memory.HEADROOM * 1.01, "this machine (RAM)"))
    with pytest.raises(UserError) as e:  # 3 fits but does not divide 8: 2 x 4 keeps the step, 3 is offered too
        memory.check(net, cfg, 1024)
    assert "--batch-size 2 (with training.grad_accum: 4 for the same 8 rows per step); or --batch-size 3, the " \
           "largest that fits" in e.value.fix
    monkeypatch.setattr(memory, "free_memory", lambda: (need[8] / memory.HEADROOM * 1.01, "this machine (RAM)"))
    assert memory.check(net, cfg, 1024).fits
    monkeypatch.setattr(memory, "free_memory", lambda: (need[1] / 2, "the GPU"))
    with pytest.raises(UserError) as e:
        memory.check(net, cfg, 1024)
    assert "gradient_checkpointing" in e.value.fix or "shorter --max-length" in e.value.fix
    cfg.training.memory_check = False
    assert not memory.check(net, cfg, 1024).fits  # the user's call


def test_an_out_of_memory_error_mid_run_says_what_to_change(tmp_path, tiny_model, monkeypatch):
    """A CUDA OOM the memory check did not foresee ends with a message and the fix, not a traceback."""
    from dsft.data.generate import generate, load_scenarios
    from dsft.train import trainer

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in generate(load_scenarios(), 12, seed=1)))
    cfg = cfgmod.load(None, {"model.name_or_path": str(tiny_model), "data.train": [str(data)],
                             "output.dir": str(tmp_path / "run"), "training.eval_tool_sample": 0,
                             "training.time_budget": None, "training.batch_size": 4})

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "loss_sum", oom)
    with pytest.raises(UserError) as e:
        trainer.train(cfg)
    assert "out of GPU memory at step 1 on a micro-batch of 4 x" in e.value.message
    assert "--batch-size 2 (training.grad_accum: 2" in e.value.fix and "gradient_checkpointing" in e.value.fix


def test_decision_tokens_weigh_the_loss_and_the_reported_loss_stays_plain(tiny_model, tiny_tokenizer):
    """training.decision_weight: the tokens that end a JSON value (`,"`, `}` ...) count `w` times in
    the gradient's loss; the plain sum (what runs report) is loss_sum's exactly."""
    from transformers import AutoModelForCausalLM

    from dsft.train.loss import decision_tokens, loss_sum, weighted_loss_sum

    tok = tiny_tokenizer
    ids = decision_tokens(tok)
    texts = {tok.convert_tokens_to_string([t]) for t in tok.convert_ids_to_tokens(ids)}
    assert {",\"", "}", "\"}", "}}"} <= texts and all(set(t) <= set('",}]') for t in texts)
    assert "\":" not in texts and "{\"" not in texts  # a key's colon, an object's opening: no decision
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    row = tok('{"city":"Lyon","days":3}', add_special_tokens=False)["input_ids"]
    batch = {"input_ids": torch.tensor([row]), "attention_mask": torch.ones(1, len(row), dtype=torch.long),
             "labels": torch.tensor([[-100] + row[1:]])}
    with torch.no_grad():
        plain, n = loss_sum(model, batch, share_prefix=False)
        ones = torch.ones(len(tok))
        same, reported, m = weighted_loss_sum(model, batch, ones, share_prefix=False)
        assert torch.allclose(same, plain) and torch.allclose(reported, plain) and n == m
        weights = ones.clone()
        weights[ids] = 4.0
        heavy, reported, _ = weighted_loss_sum(model, batch, weights, share_prefix=False)
        logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
        per = torch.nn.functional.cross_entropy(logits, batch["labels"][0, 1:], reduction="none")
        decided = torch.isin(batch["labels"][0, 1:], torch.tensor(ids))
        assert int(decided.sum()) >= 2  # `","` after Lyon and `}` at the end
        assert torch.allclose(heavy, plain + 3 * per[decided].sum(), rtol=1e-5)
        assert torch.allclose(reported, plain)


def test_a_run_with_decision_weight_reports_plain_losses_and_learns_otherwise(tmp_path, tiny_model):
    """The first step's reported loss (before any update) is the unweighted run's exactly; later steps
    differ, because the gradient followed the weighted loss."""
    run_dsft("data", "generate", "-n", "16", "--seed", "9", "--out", tmp_path / "d.jsonl", check=0)
    common = ["--model", tiny_model, "--train", tmp_path / "d.jsonl", "--epochs", "1", "--batch-size", "4",
              "--time-budget", "none"]
    losses = {}
    for weight in (1, 4):
        cfg = tmp_path / f"w{weight}.yaml"
        cfg.write_text(f"training: {{log_every: 1, eval_every: null, eval_tool_sample: 0, decision_weight: {weight}}}\n")
        run_dsft("train", cfg, *common, "--out", tmp_path / f"w{weight}", check=0)
        losses[weight] = [json.loads(x)["loss"] for x in (tmp_path / f"w{weight}" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses[1]) == len(losses[4]) >= 3
    assert losses[4][0] == losses[1][0] and losses[4][1:] != losses[1][1:]
