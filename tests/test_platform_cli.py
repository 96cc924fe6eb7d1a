"""`dsft models`, `dsft jobs` and `dsft pipeline` as a user runs them."""

from __future__ import annotations

import json

import pytest

from dsft.registry import db, jobs, store
from tests.conftest import run_dsft
from tests.test_registry import fake_run


def test_models_list_show_diff_alias(tmp_path):
    home = tmp_path / "home"
    store.register(store.Registration("lightdom", fake_run(home, "a", lr=1e-3), dataset_id="d1", metrics={"acc": 0.5}))
    store.register(store.Registration("lightdom", fake_run(home, "b", lr=2e-3), dataset_id="d2", metrics={"acc": 0.8}))
    db.dispose()
    out = run_dsft("models", "alias", "lightdom", "champion", "2", "--reason", "better", check=0).stdout
    assert "None -> 2" in out
    listed = json.loads(run_dsft("models", "list", "--json", check=0).stdout)
    assert listed == [{"name": "lightdom", "latest": 2, "versions": 2, "aliases": {"champion": 2},
                       "created": listed[0]["created"]}]
    shown = json.loads(run_dsft("models", "show", "lightdom@champion", "--json", check=0).stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["champion"] and shown["config"]["method"] == "lora"
    diff = json.loads(run_dsft("models", "diff", "lightdom:1", "lightdom@champion", "--json", check=0).stdout)
    assert diff["metrics"]["acc"]["delta"] == pytest.approx(0.3) and diff["data"]["same"] is False
    table = run_dsft("models", "diff", "lightdom:1", "lightdom:2", check=0).stdout
    assert "training.learning_rate" in table and "different datasets" in table
    err = run_dsft("models", "show", "lightdom:9", check=1).stderr
    assert "no model version" in err and "fix:" in err
    err = run_dsft("models", "alias", "lightdom", "champion", "7", check=1).stderr
    assert "has no version 7" in err


def test_jobs_list_show_cancel(tmp_path):
    job_id = jobs.submit("prepare", {"inputs": []})
    db.dispose()
    listed = run_dsft("jobs", "list", check=0).stdout
    assert job_id[:8] in listed and job_id not in listed, "ids shown as short as git's, whole in any width"
    assert "was queued" in run_dsft("jobs", "cancel", job_id[:8], check=0).stdout  # the prefix the list shows
    shown = run_dsft("jobs", "show", job_id[:8], check=0).stdout
    assert '"status": "cancelled"' in shown and job_id in shown
    assert "no job abc" in run_dsft("jobs", "show", "abc", check=1).stderr


@pytest.mark.slow
def test_pipeline_run_from_a_yaml_file(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text("generate: {n: 80, seed: 3}\ntrain: {overrides: {training.epochs: 1}}\neval: false\n"
                    "register: {name: quick}\n")
    out = run_dsft("pipeline", "run", spec, check=0).stdout
    assert "queued pipeline job" in out and '"ref": "quick:1"' in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n")
    assert "is not a mapping" in run_dsft("pipeline", "run", bad, check=2).stderr


@pytest.mark.slow
def test_pipeline_collects_from_a_style_guide(tmp_path):
    guide = tmp_path / "home" / "uploads" / "g" / "style.md"
    guide.parent.mkdir(parents=True)
    guide.write_text("# UI\n\n## Buttons\n\nUse the primary button for the main action, one per view.\n\n"
                     "## Forms\n\nLabel every field; put errors under the field they belong to.\n")
    spec = tmp_path / "p.yaml"
    spec.write_text("collect: {style_guides: [uploads/g/style.md]}\ngenerate: {n: 60}\n"
                    "train: {overrides: {training.epochs: 1}}\neval: false\n")
    out = run_dsft("pipeline", "run", spec, check=0).stdout
    assert '"collect"' in out and '"examples": 2' in out


def test_ab_cli(tmp_path):
    for name in ("a", "b"):
        store.register(store.Registration("lightdom", fake_run(tmp_path / "home", name)))
    db.dispose()
    out = run_dsft("ab", "create", "lightdom", "-v", "1:90", "-v", "2:10", "--min-samples", "5", "--auto-promote",
                   check=0).stdout
    test_id = out.split()[2].rstrip(":")
    from dsft.registry import abtest

    for k in range(60):
        abtest.outcome(test_id, variant="B" if k % 2 else "A", success=k % 2 == 1)
    db.dispose()
    shown = run_dsft("ab", "show", test_id, check=0).stdout
    assert "decided" in shown and "lightdom@champion -> 2" in shown
    assert "VERSION[:WEIGHT]" in run_dsft("ab", "create", "lightdom", "-v", "x", check=2).stderr


def test_models_register_brings_a_run_from_anywhere_into_the_home_with_its_lineage(tmp_path):
    """Issue 13: `dsft models register RUN --name N --alias A` on the README's `--out runs/first`
    (outside DSFT_HOME): the run is copied in (not its checkpoints), the prepared dataset it trained
    on is its lineage, and `dsft deploy` takes the run folder too; the API keeps its path rule."""
    import yaml

    from tests.test_registry import fake_run

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "train.jsonl").write_text("{}\n")
    (prepared / "report.json").write_text(json.dumps({"dataset_id": "d" * 64, "counts": {"train": 1}}))
    run = fake_run(tmp_path / "work", "first")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = {"train": [str(prepared / "train.jsonl")]}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints" / "step-5").mkdir(parents=True)
    (run / "checkpoints" / "step-5" / "state.pt").write_bytes(b"0" * 1000)

    said = " ".join(run_dsft("models", "register", run, "--name", "calendar", "--alias", "candidate",
                             check=0).stdout.split())
    assert "registered calendar:1" in said and "dataset dddddddddddd" in said and "dsft deploy calendar:1" in said
    shown = json.loads(run_dsft("models", "show", "calendar@candidate", "--json", check=0).stdout)
    home = tmp_path / "home"
    copied = home / shown["artifact"]
    assert shown["dataset_id"] == "d" * 64 and shown["artifact"].startswith("models/registered/calendar/")
    assert (copied / "adapter_model.safetensors").read_bytes() == (run / "adapter_model.safetensors").read_bytes()
    assert not (copied / "checkpoints").exists(), "resume state is not part of a version"
    with db.session() as s:
        assert s.get(store.Dataset, "d" * 64).counts == {"train": 1}, "the dataset is in the registry too"
    # the same run again: a new version, the same copy; --link leaves the run where it is
    run_dsft("models", "register", run, "--name", "calendar", check=0)
    linked = run_dsft("models", "register", run, "--name", "cal-linked", "--link", check=0).stdout
    assert "cal-linked:1" in linked
    assert (home / "models" / "registered" / "cal-linked").iterdir().__next__().resolve() == run.resolve()

    said = " ".join(run_dsft("deploy", run, "--name", "cal-direct", "--as", "prod", check=0).stdout.split())
    assert "registered" in said and "cal-direct:1" in said and "-> prod" in said

    err = " ".join(run_dsft("models", "register", tmp_path / "nope", "--name", "x", check=2).stderr.split())
    assert "does not exist" in err
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("{}")
    err = " ".join(run_dsft("models", "register", tmp_path / "unfinished", "--name", "x", check=2).stderr.split())
    assert "is not finished" in err and "--resume" in err
