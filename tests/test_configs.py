"""Every shipped config validates; presets and the guide's layout resolve as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsft.train.config import load

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_validates(path):
    cfg = load(path)
    assert cfg.model.name_or_path and cfg.data.train and cfg.output.dir
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "dsft train" in first, "every config starts with the command that runs it"


def test_accelerate_configs_start_with_their_command():
    for path in (Path(__file__).parent.parent / "configs" / "accelerate").glob("*.yaml"):
        assert path.read_text().startswith("# accelerate launch --config_file configs/accelerate/" + path.name)


def test_expected_configs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"tiny-demo", "deepseek-coder-1.3b-lora", "deepseek-coder-6.7b-qlora", "r1-distill-qwen-1.5b-lora",
            "r1-distill-qwen-7b-qlora", "deepseek-v2-lite-lora", "qlora-multi-gpu", "guide-layout"} <= names


def test_guide_layout_maps_onto_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("DSFT_HOME", str(tmp_path))
    cfg = load(Path(__file__).parent.parent / "configs" / "guide-layout.yaml")
    assert cfg.model.name_or_path == "deepseek-ai/deepseek-coder-1.3b-instruct"
    assert (cfg.training.batch_size, cfg.training.learning_rate, cfg.data.max_length, cfg.data.val_ratio) == (
        4, 2e-5, 4096, 0.1)
    assert cfg.output.dir == str(tmp_path / "runs" / "my-finetuned-model")


def test_precedence_method_defaults_then_rank_preset_then_flags():
    base = {"model.name_or_path": "some/model", "data.train": ["x"], "output.dir": "o"}
    cfg = load(None, {**base, "method": "qlora"})
    assert (cfg.training.learning_rate, cfg.training.batch_size, cfg.lora.r) == (2e-4, 4, 16)
    cfg = load(None, {**base, "rank_preset": "tool-use"})
    assert (cfg.lora.r, cfg.lora.alpha, cfg.method) == (32, 64, "lora")
    cfg = load(None, {**base, "rank_preset": "tool-use", "lora.r": 8})
    assert (cfg.lora.r, cfg.lora.alpha) == (8, 64)
    assert load(None, {**base, "method": "full"}).training.learning_rate == 2e-5


def test_tiny_model_gets_its_measured_preset(tiny_model):
    cfg = load(None, {"model.name_or_path": str(tiny_model), "data.train": ["x"], "output.dir": "o"})
    assert (cfg.method, cfg.training.learning_rate, cfg.training.epochs, cfg.training.time_budget) == ("full", 2e-3, 30, 600)
    assert load(None, {"model.name_or_path": str(tiny_model), "data.train": ["x"], "output.dir": "o",
                       "method": "lora"}).training.learning_rate == 2e-4


def test_shipped_pipelines_validate():
    import yaml

    from dsft.api.finetuning import PipelineRequest

    paths = sorted((Path(__file__).parent.parent / "configs" / "pipelines").glob("*.yaml"))
    assert paths
    for path in paths:
        assert path.read_text().startswith("# dsft pipeline run configs/pipelines/" + path.name)
        PipelineRequest.model_validate(yaml.safe_load(path.read_text()))
