"""`dsft worker` processes: sharing one PostgreSQL queue, dying mid-training, being cancelled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from dsft.registry import jobs


def start_worker(home: Path, log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dsft", "worker", "--poll", "0.2"],
                            env={**os.environ, "DSFT_HOME": str(home), **env},
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def write_examples(home: Path, n: int, seed: int = 0) -> str:
    from dsft.data.generate import generate, load_scenarios

    folder = home / "uploads" / f"gen{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n"
                                                 for e in generate(load_scenarios(), n, seed=seed)))
    return f"uploads/gen{seed}/data.jsonl"


@pytest.mark.slow
def test_three_workers_on_one_postgres_run_each_job_exactly_once(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DSFT_DATABASE_URL", pg_url)
    home = tmp_path / "home"
    data = write_examples(home, 40)
    ids = [jobs.submit("prepare", {"inputs": [data], "seed": k}) for k in range(20)]
    workers = [start_worker(home, tmp_path / f"worker{k}.log") for k in range(3)]
    try:
        wait_for(lambda: all(jobs.get(i).status in jobs.DONE for i in ids), 240, "20 jobs to finish")
    finally:
        stop(workers)
    ran_by = {}
    for i in ids:
        job = jobs.get(i)
        assert job.status == "succeeded" and job.attempt == 1, (job.status, job.error)
        starts = [e.data["worker"] for e in jobs.events(i) if e.data.get("status") == "running"]
        assert len(starts) == 1  # claimed once, run once
        ran_by[i] = starts[0]
    assert len(set(ran_by.values())) >= 2  # the work was shared
    assert len({jobs.get(i).result["dataset_id"] for i in ids}) == 20  # one dataset per seed


@pytest.mark.slow
def test_killed_worker_job_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    home = tmp_path / "home"
    data = write_examples(home, 200)
    job_id = jobs.submit("train", {"overrides": {"model.name_or_path": "tiny", "data.train": [data],
                                                 "training.epochs": 2, "training.save_every": 10,
                                                 "training.eval_every": 100000, "training.threads": 1,
                                                 "training.time_budget": None, "training.eval_tool_sample": 0}})
    env = {"DSFT_STALE_SECONDS": "3"}
    first = start_worker(home, tmp_path / "first.log", **env)
    run = home / "runs" / job_id
    try:
        wait_for(lambda: len(list((run / "checkpoints").glob("step-*"))) > 0 and
                 any(e.kind == "progress" and e.data["step"] >= 20 for e in jobs.events(job_id)), 180,
                 "a checkpoint")
        first.send_signal(signal.SIGKILL)  # the worker dies; its child follows it
        first.wait()
        second = start_worker(home, tmp_path / "second.log", **env)
        job = wait_for(lambda: (j := jobs.get(job_id)).status in jobs.DONE and j, 300, "the resumed job")
    finally:
        stop([first] + ([second] if "second" in locals() else []))
    assert job.status == "succeeded", (job.error, (tmp_path / "second.log").read_text()[-2000:])
    assert job.attempt == 2 and job.result["resumed"] is True
    why = [e.data.get("why", "") for e in jobs.events(job_id) if e.data.get("status") == "queued"]
    assert any("stopped responding" in w for w in why)
    phases = [e.data for e in jobs.events(job_id) if e.kind == "phase"]
    assert [p["resumed"] for p in phases] == [False, True]


@pytest.mark.slow
def test_cancel_stops_training_after_a_checkpoint(tmp_path):
    home = tmp_path / "home"
    data = write_examples(home, 200)
    job_id = jobs.submit("train", {"overrides": {"model.name_or_path": "tiny", "data.train": [data],
                                                 "training.epochs": 50, "training.eval_every": 100000,
                                                 "training.threads": 1, "training.time_budget": None,
                                                 "training.eval_tool_sample": 0}})
    worker = start_worker(home, tmp_path / "worker.log")
    try:
        wait_for(lambda: any(e.kind == "progress" for e in jobs.events(job_id)), 180, "training to start")
        assert jobs.cancel(job_id) == "running"
        job = wait_for(lambda: (j := jobs.get(job_id)).status in jobs.DONE and j, 120, "the cancel")
    finally:
        stop([worker])
    assert job.status == "cancelled", job.error
    saved = [e.data for e in jobs.events(job_id) if e.kind == "checkpoint"]
    assert saved and (home / saved[0]["path"] / "trainable.safetensors").exists()
