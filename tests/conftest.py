"""Shared helpers: run the real `dsft` command, find test assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"

# Each xdist worker, and every process it starts, gets its share of the cores: OpenMP threads that
# outnumber the cores spin waiting for each other (measured: a tool evaluation took 35 s instead of
# 1.3 s beside busy processes), and time-budgeted runs then see a machine many times slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _THREADS)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own DSFT_HOME: nothing leaks between tests or into the checkout."""
    monkeypatch.setenv("DSFT_HOME", str(tmp_path / "home"))


def run_dsft(*args: str, cwd: Path | None = None, check: int | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """The real console command, in a subprocess, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "dsft", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The embedded default model (deepseek_v3, seed 0, the shipped pretrained start), built once per test worker."""
    from dsft.model.tiny import TinySpec, build

    return build(tmp_path_factory.mktemp("tiny") / "tiny-deepseek_v3", TinySpec())


@pytest.fixture(scope="session")
def tiny_circuit_model(tmp_path_factory) -> Path:
    """The embedded default as it was before pretraining (`--no-pretrained`): random init plus the copy circuit."""
    from dsft.model.tiny import TinySpec, build

    return build(tmp_path_factory.mktemp("tiny-circuit") / "tiny-deepseek_v3", TinySpec(pretrained=False))


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory) -> Path:
    """The embedded default without its copy circuit (`--random-init`), for float-exactness checks:
    the circuit's sharp attention and zero-started projections make float32 reordering noise grow."""
    from dsft.model.tiny import TinySpec, build

    return build(tmp_path_factory.mktemp("tiny-random") / "tiny-deepseek_v3", TinySpec(copy_circuit=False))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


# ---------------------------------------------------------------- the platform: databases and a live API

PG_ADMIN = os.environ.get("DSFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_connect(dbname: str | None = None):
    import psycopg

    url = PG_ADMIN if dbname is None else PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database on the machine's server (127.0.0.1:5432), dropped afterwards."""
    import uuid

    try:
        admin = _pg_connect()
    except Exception as e:  # noqa: BLE001
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}: {e}")
    name = f"dsft_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    from dsft.registry import db

    db.dispose()
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, monkeypatch):
    """Run the test once on SQLite in DSFT_HOME and once on a fresh PostgreSQL database."""
    from dsft.registry import db

    if request.param == "postgresql":
        monkeypatch.setenv("DSFT_DATABASE_URL", request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv("DSFT_DATABASE_URL", raising=False)
    yield request.param
    db.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dsft(args: list[str], home: Path, env: dict[str, str], log: Path, timeout: float = 60):
    """A `dsft` server subprocess, returned once its /health answers (or its log, in the error)."""
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dsft", *args, "--port", str(port)],
                            env={**os.environ, **env, "DSFT_HOME": str(home)}, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, port
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"dsft {args[0]} did not start:\n{log.read_text()}")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


class LiveApi:
    """`dsft api` in a subprocess on 127.0.0.1, as a user starts it."""

    def __init__(self, home: Path, env: dict[str, str], worker: bool = True):
        self.key = env.get("DSFT_API_KEY")
        self.log = home.parent / f"api-{free_port()}.log"
        self.proc, self.url, self.port = start_dsft(["api"] + ([] if worker else ["--no-worker"]), home, env, self.log)

    def client(self, key: bool = True, timeout: float = 60):
        import httpx

        headers = {"Authorization": f"Bearer {self.key}"} if key and self.key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait_job(self, job_id: str, timeout: float = 300) -> dict:
        import time

        with self.client() as c:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                job = c.get(f"/api/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return job
                time.sleep(0.3)
        raise TimeoutError(f"job {job_id} still {job['status']}")

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def live_api(tmp_path):
    """Factory: start `dsft api` with extra environment; every server started is stopped afterwards."""
    started: list[LiveApi] = []

    def start(env: dict[str, str] | None = None, worker: bool = True) -> LiveApi:
        api = LiveApi(tmp_path / "home", {k: v for k, v in (env or {}).items() if v is not None}, worker)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
