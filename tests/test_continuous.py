"""Continuous training: new data that makes the model better promotes it; data that makes it worse
does not, and the reason is recorded."""

from __future__ import annotations

import copy

import pytest

from dsft.registry import continuous, db, jobs, store, tasks
from dsft.registry.worker import Worker


def run_jobs(n: int = 1) -> None:
    Worker(poll=0.2).run(max_jobs=n)


def good_examples(n: int, seed: int) -> list[dict]:
    from dsft.data.generate import generate, load_scenarios

    return generate(load_scenarios(), n, seed=seed, error_ratio=0.0, ood_ratio=0.0)


def refusals(examples: list[dict]) -> list[dict]:
    """Valid examples that teach the model never to call a tool: worse for this task."""
    out = []
    for ex in examples:
        ex = copy.deepcopy(ex)
        first_user = next(i for i, m in enumerate(ex["messages"]) if m["role"] == "user")
        ex["messages"] = ex["messages"][: first_user + 1] + [
            {"role": "assistant", "content": "I would rather not do that; please do it yourself."}]
        out.append(ex)
    return out


def test_policy_round_trip_and_validation_on_arrival():
    pol = continuous.set_policy(continuous.Policy(name="m", threshold=3))
    assert continuous.policy() == pol
    got = continuous.add_examples([good_examples(1, 0)[0], {"messages": []}, {"nope": 1}])
    assert (got["accepted"], got["rejected"]) == (1, 2)
    assert [f["code"] for f in got["examples"][1]["findings"]] == ["empty_messages"]
    assert got["retrain_job"] is None and got["buffered"] == 1
    status = continuous.status()
    assert status["buffered"] == 1 and status["rejected_total"] == 2 and status["next_trigger"]["remaining"] == 2
    got = continuous.add_examples(good_examples(2, 1))
    assert got["retrain_job"] is not None  # the threshold was reached
    assert continuous.maybe_retrain("threshold") is None  # one at a time
    assert jobs.get(got["retrain_job"]).kind == "retrain"


@pytest.mark.slow
def test_better_data_is_promoted_worse_data_is_not():
    """The gate, end to end, on a fixed validation set that the new data covers: the from-scratch
    tiny model learns rows it trains on within a minute (it does not yet generalize within one:
    issue 11), so "better" is new data holding the validation rows, "worse" is refusals of them."""
    import orjson

    from dsft.home import dsft_home

    db.engine()
    quick = {"training.eval_every": 100000, "training.eval_tool_sample": 0, "training.time_budget": None,
             "data.copy_augment": 0, "training.batch_size": 16}  # every retrain here is one batch
    first = jobs.submit("pipeline", {"generate": {"n": 4, "seed": 0},
                                     "train": {"overrides": {"training.epochs": 1, **quick}},
                                     "eval": False, "register": {"name": "lightdom", "alias": "champion"}})
    fixed = dsft_home() / "uploads" / "fixed" / "rows.jsonl"
    fixed.parent.mkdir(parents=True)
    fixed.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in good_examples(16, seed=7)))
    held = jobs.submit("prepare", {"inputs": ["uploads/fixed/rows.jsonl"], "val_ratio": 0.5, "seed": 0})
    run_jobs(2)
    assert jobs.get(first).status == "succeeded", jobs.get(first).error
    assert jobs.get(held).status == "succeeded", jobs.get(held).error
    validation_id = jobs.get(held).result["dataset_id"]
    validation_rows = [orjson.loads(x) for x in tasks.dataset_files(validation_id)[1].read_bytes().splitlines()]
    assert len(validation_rows) >= 4
    continuous.set_policy(continuous.Policy(
        name="lightdom", threshold=10_000, eval_limit=len(validation_rows), validation_dataset=validation_id,
        train_overrides={"training.epochs": 120, **quick},
        gate=continuous.Gate(metric="tool_name_accuracy", margin=0.05)))

    continuous.add_examples(validation_rows)
    better = continuous.maybe_retrain("trigger")
    run_jobs()
    job = jobs.get(better)
    assert job.status == "succeeded", job.error
    assert job.result["verdict"] == "promoted", job.result["reason"]
    with db.session() as s:
        assert store.resolve(s, "lightdom@champion").version == 2

    pol = continuous.policy()  # the validation set stays fixed; refusals of its rows must cost tool calls
    continuous.set_policy(pol.model_copy(update={"train_overrides": {"training.epochs": 40, **quick}}))
    continuous.add_examples(refusals(validation_rows))
    worse = continuous.maybe_retrain("trigger")
    run_jobs()
    job = jobs.get(worse)
    assert job.status == "succeeded", job.error
    assert job.result["verdict"] == "kept"
    assert "champion kept" in job.result["reason"] and "tool_name_accuracy" in job.result["reason"]
    gate = job.result["metrics"]["tool_name_accuracy"]
    assert gate["model"] < gate["baseline"]  # the new data made the model measurably worse
    with db.session() as s:
        assert store.resolve(s, "lightdom@champion").version == 2  # unchanged
        assert store.resolve(s, "lightdom:3").description.startswith("retrain")  # registered, not promoted
    status = continuous.status()
    assert status["last_run"]["verdict"] == "kept" and status["buffered"] == 0
    assert status["used"] == 2 * len(validation_rows)


def test_schedule_starts_a_retrain_only_when_due_and_buffered():
    continuous.set_policy(continuous.Policy(name="m", threshold=1000, schedule_seconds=0.01))
    assert continuous.maybe_retrain("schedule") is None  # empty buffer: nothing to do
    continuous.add_examples(good_examples(1, 0))
    job_id = continuous.maybe_retrain("schedule")
    assert job_id is not None and jobs.get(job_id).spec["reason"] == "schedule"
    assert continuous.maybe_retrain("schedule") is None  # one at a time
    assert continuous.status()["active_job"] == job_id and "scheduled_at" in continuous.status()["next_trigger"]
    continuous.set_policy(continuous.Policy(name="m", threshold=1000))
    jobs.cancel(job_id)
    assert continuous.maybe_retrain("schedule") is None  # no schedule configured
