"""The registry and the job queue, each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from safetensors.torch import save_file

from dsft.errors import UserError
from dsft.registry import db, jobs, store
from dsft.registry.schema import ModelVersion


def fake_run(root: Path, name: str, lr: float = 1e-3, adapter: bool = True) -> Path:
    """A finished run folder as the trainer leaves it: config, weights (safetensors), run facts."""
    import torch
    import yaml

    run = root / "runs" / name
    run.mkdir(parents=True)
    cfg = {"model": {"name_or_path": "org/base"}, "method": "lora" if adapter else "full",
           "training": {"learning_rate": lr, "epochs": 3}, "output": {"dir": str(run)}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    if adapter:
        (run / "adapter_config.json").write_text("{}")
        save_file({"w": torch.full((4,), lr)}, run / "adapter_model.safetensors")
    else:
        save_file({"w": torch.full((4,), lr)}, run / "model.safetensors")
    (run / "run.json").write_text('{"train_loss": 1.5, "eval_loss": 1.7}')
    (run / "chat_template.jinja").write_text("{{ messages }}")
    return run


def test_versions_increment_and_are_immutable(database, tmp_path):
    home = tmp_path / "home"
    a = store.register(store.Registration("lightdom", fake_run(home, "a"), dataset_id="d1", metrics={"acc": 0.5}))
    b = store.register(store.Registration("lightdom", fake_run(home, "b", lr=2e-3), dataset_id="d2",
                                          metrics={"acc": 0.7}))
    again = store.register(store.Registration("lightdom", home / "runs" / "a"))
    assert (a.version, b.version, again.version) == (1, 2, 3)
    assert a.artifact_sha256 == again.artifact_sha256 != b.artifact_sha256
    assert a.kind == "adapter" and a.base_model == "org/base" and a.metrics["eval_loss"] == 1.7
    assert a.template_hash and a.config_hash != b.config_hash
    with db.session() as s:  # the first version is exactly as registered
        first = store.resolve(s, "lightdom:1")
        assert first.dataset_id == "d1" and first.metrics["acc"] == 0.5
        assert store.resolve(s, "lightdom").version == 3
    assert not any(name.startswith(("update", "set_version", "edit")) for name in dir(store))


def test_concurrent_registrations_get_distinct_versions(database, tmp_path):
    run = fake_run(tmp_path / "home", "a")
    db.engine()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: store.register(store.Registration("m", run)).version, range(16)))
    assert sorted(got) == list(range(1, 17))


def test_aliases_move_in_a_transaction_and_are_logged(database, tmp_path):
    home = tmp_path / "home"
    for name in ("a", "b"):
        store.register(store.Registration("m", fake_run(home, name)))
    store.set_alias("m", "champion", 1, "first")
    store.set_alias("m", "champion", 2, "better")
    with db.session() as s:
        assert store.resolve(s, "m@champion").version == 2
        log = store.alias_log(s, "m")
    assert [(e["from"], e["to"], e["reason"]) for e in log] == [(None, 1, "first"), (1, 2, "better")]
    with pytest.raises(UserError, match="no version 9"):
        store.set_alias("m", "champion", 9)
    with db.session() as s:
        assert store.resolve(s, "m@champion").version == 2  # a refused move changes nothing
        with pytest.raises(UserError, match="no alias"):
            store.resolve(s, "m@nope")
    store.set_alias("m", "champion", None, "retired")
    with db.session() as s, pytest.raises(UserError):
        store.resolve(s, "m@champion")


def test_diff_shows_config_data_and_metric_changes(database, tmp_path):
    home = tmp_path / "home"
    store.register(store.Registration("m", fake_run(home, "a", lr=1e-3), dataset_id="d1", metrics={"acc": 0.5}))
    store.register(store.Registration("m", fake_run(home, "b", lr=2e-3), dataset_id="d2", metrics={"acc": 0.75}))
    with db.session() as s:
        d = store.diff(store.resolve(s, "m:1"), store.resolve(s, "m:2"))
    assert d["config"]["training.learning_rate"] == [1e-3, 2e-3]
    assert "output.dir" in d["config"] and "model.name_or_path" not in d["config"]
    assert d["data"] == {"a": "d1", "b": "d2", "same": False}
    assert d["metrics"]["acc"] == {"a": 0.5, "b": 0.75, "delta": 0.25}


def test_pickle_weights_are_refused(database, tmp_path):
    run = tmp_path / "home" / "runs" / "p"
    run.mkdir(parents=True)
    (run / "pytorch_model.bin").write_bytes(b"\x80\x04")
    (run / "config.yaml").write_text("model: {name_or_path: x}\n")
    with pytest.raises(UserError, match="pickle"):
        store.register(store.Registration("m", run))


def test_each_job_is_claimed_exactly_once(database):
    ids = {jobs.submit("prepare", {"n": k}) for k in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (job := jobs.claim(name)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{k}",)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # all claimed, none twice
    assert all(jobs.get(i).attempt == 1 and jobs.get(i).status == "running" for i in ids)


def test_stale_jobs_are_requeued_and_old_attempts_fenced(database):
    job_id = jobs.submit("train", {})
    first = jobs.claim("dead-worker")
    assert first.attempt == 1
    assert jobs.requeue_stale(older_than=3600) == []  # still fresh
    assert jobs.requeue_stale(older_than=0) == [job_id]
    second = jobs.claim("live-worker")
    assert second.id == job_id and second.attempt == 2
    assert not jobs.finish(job_id, 1, "failed", error="late news from the dead worker")  # fenced
    assert jobs.finish(job_id, 2, "succeeded", result={"ok": True})
    job = jobs.get(job_id)
    assert job.status == "succeeded" and job.result == {"ok": True}
    kinds = [(e.kind, e.data.get("status")) for e in jobs.events(job_id)]
    assert kinds == [("status", "queued"), ("status", "running"), ("status", "queued"), ("status", "running"),
                     ("status", "succeeded")]


def test_cancel(database):
    queued = jobs.submit("eval", {})
    assert jobs.cancel(queued) == "queued" and jobs.get(queued).status == "cancelled"
    running = jobs.submit("eval", {})
    jobs.claim("w")
    assert jobs.cancel(running) == "running"
    assert jobs.heartbeat([running], "w") == [running]  # the worker learns of it on its next beat
    with pytest.raises(UserError, match="no job"):
        jobs.cancel("nope")


def test_schema_comes_from_migrations(database):
    import sqlalchemy as sa

    with db.engine().connect() as c:
        assert c.execute(sa.text("select version_num from alembic_version")).scalar() == "0003"
        assert {"jobs", "job_events", "model_versions", "aliases", "alias_events", "datasets", "examples",
                "settings"} <= set(sa.inspect(c).get_table_names())
    assert ModelVersion.__tablename__ == "model_versions"


def test_migrations_build_exactly_the_schema_the_code_declares(database):
    """alembic's autogenerate finds nothing to add: a column added to schema.py without its
    migration fails here, on SQLite and on PostgreSQL."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dsft.registry.schema import Base

    with db.engine().connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == []
