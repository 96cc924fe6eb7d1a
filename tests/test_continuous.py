"""Continuous training: new data that makes the model better promotes it; data that makes it worse
does not, and the reason is recorded."""

from __future__ import annotations

import copy

import pytest

from dsft.registry import continuous, db, jobs, store
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
    db.engine()
    first = jobs.submit("pipeline", {"generate": {"n": 240, "seed": 0},
                                     "train": {"overrides": {"training.epochs": 1, "training.eval_every": 100000}},
                                     "eval": False, "register": {"name": "lightdom", "alias": "champion"}})
    run_jobs()
    assert jobs.get(first).status == "succeeded", jobs.get(first).error
    continuous.set_policy(continuous.Policy(
        name="lightdom", threshold=10_000, eval_limit=40,
        train_overrides={"training.epochs": 6, "training.eval_every": 100000},
        gate=continuous.Gate(metric="tool_name_accuracy", margin=0.05)))

    continuous.add_examples(good_examples(600, seed=7))
    better = continuous.maybe_retrain("trigger")
    run_jobs()
    job = jobs.get(better)
    assert job.status == "succeeded", job.error
    assert job.result["verdict"] == "promoted", job.result["reason"]
    with db.session() as s:
        assert store.resolve(s, "lightdom@champion").version == 2

    pol = continuous.policy()  # the validation set stays fixed; refusals, trained hard, must cost tool calls
    continuous.set_policy(pol.model_copy(update={"train_overrides": {"training.epochs": 3,
                                                                     "training.eval_every": 100000}}))
    continuous.add_examples(refusals(good_examples(2000, seed=9)))
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
    assert status["last_run"]["verdict"] == "kept" and status["buffered"] == 0 and status["used"] == 2600


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
