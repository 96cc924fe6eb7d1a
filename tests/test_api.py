"""The REST API against a real `dsft api` (uvicorn on 127.0.0.1), with httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ASSETS

GOOD = {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "How do I center a div?"},
                     {"role": "assistant", "content": "Use display: flex with justify-content and align-items center."}]}


def upload(c: httpx.Client, name: str, content: bytes) -> httpx.Response:
    return c.post("/api/datasets", files={"file": (name, content)})


def test_every_endpoint_but_health_needs_the_key(live_api):
    api = live_api({"DSFT_API_KEY": "s3cret"}, worker=False)
    said = " ".join(api.log.read_text().split())  # where to connect, printed on start (issue 13)
    assert f"dsft api on {api.url} (docs {api.url}/docs): API key required" in said and "jobs need `dsft worker`" in said
    with api.client(key=False) as anon, api.client() as ok:
        assert anon.get("/health").status_code == 200
        assert anon.get("/openapi.json").status_code == 401
        spec = ok.get("/openapi.json").json()
        checked = 0
        for path, ops in spec["paths"].items():
            if path == "/health":
                continue
            url = path.replace("{", "").replace("}", "")  # any value: auth is checked first
            for method in ops:
                r = anon.request(method.upper(), url)
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.json()["error"]["code"] == "unauthorized"
                wrong = anon.request(method.upper(), url, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
                checked += 1
        assert checked >= 25
        assert ok.post("/api/finetuning/continuous/add-example", json={"example": GOOD}).status_code == 200


def test_without_a_key_the_api_refuses_to_listen_beyond_loopback():
    env = {k: v for k, v in os.environ.items() if k != "DSFT_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "dsft", "api", "--host", "0.0.0.0", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "without an API key" in proc.stderr and "Traceback" not in proc.stderr


def test_paths_outside_home_are_refused(live_api, tmp_path):
    api = live_api(worker=False)
    home = tmp_path / "home"
    (home / "uploads" / "evil").mkdir(parents=True)
    (home / "uploads" / "evil" / "link").symlink_to("/etc")
    attempts = ["../outside.jsonl", "/etc/passwd", "uploads/../../outside.jsonl", "..%2f..%2fetc%2fpasswd",
                "%2e%2e/%2e%2e/etc/passwd", "uploads\\..\\..\\x", "~/x.jsonl", "uploads/evil/link/passwd",
                str(tmp_path / "outside.jsonl")]
    (tmp_path / "outside.jsonl").write_text(json.dumps(GOOD) + "\n")
    with api.client() as c:
        for bad in attempts:
            for method, url, body in [
                    ("POST", "/api/finetuning/phase1/create-validation-split", {"inputs": [bad]}),
                    ("POST", "/api/finetuning/phase1/score-quality", {"path": bad}),
                    ("POST", "/api/finetuning/run-pipeline", {"inputs": [bad]}),
                    ("POST", "/api/jobs", {"kind": "train", "spec": {"overrides": {"data.train": [bad]}}}),
                    ("POST", "/api/finetuning/phase3/register-model", {"name": "m", "run": bad})]:
                r = c.request(method, url, json=body)
                assert r.status_code == 400, (bad, url, r.status_code, r.text)
                assert r.json()["error"]["code"] == "path_outside_home", (bad, url, r.text)
        assert c.get("/api/jobs").json()["jobs"] == []  # nothing was queued


def test_uploads_accept_data_and_refuse_pickles(live_api):
    api = live_api(worker=False)
    with api.client() as c:
        for name, content in [("model.pkl", b"\x80\x04K\x01."), ("weights.bin", b"\x80\x04."),
                              ("data.jsonl", b"\x80\x04\x95\x00"), ("model.pt", b"PK\x03\x04zip")]:
            r = upload(c, name, content)
            assert r.status_code == 415 and r.json()["error"]["code"] == "pickle_refused", (name, r.text)
        r = upload(c, "weights.safetensors", b"not really")
        assert r.status_code == 415 and r.json()["error"]["code"] == "invalid_safetensors"
        r = upload(c, "../../evil.jsonl", json.dumps(GOOD).encode() + b"\n")
        assert r.status_code == 201
        assert r.json()["path"].startswith("uploads/") and r.json()["path"].endswith("/evil.jsonl")


def test_upload_size_limit(live_api):
    api = live_api({"DSFT_MAX_UPLOAD_MB": "0.01"}, worker=False)
    with api.client() as c:
        r = upload(c, "big.jsonl", (json.dumps(GOOD) + "\n").encode() * 100)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_errors_are_json_4xx(live_api):
    api = live_api(worker=False)
    with api.client() as c:
        for method, url, body in [("POST", "/api/finetuning/phase1/score-quality", {"examples": "x"}),
                                  ("POST", "/api/finetuning/phase1/score-quality", {}),
                                  ("GET", "/api/jobs/nope", None), ("GET", "/api/models/nope:1", None),
                                  ("POST", "/api/finetuning/phase2/configure", {"config": {"model": {}}}),
                                  ("POST", "/api/finetuning/continuous/trigger", None),
                                  ("PUT", "/api/models/m/aliases/champion", {"version": 3})]:
            r = c.request(method, url, json=body)
            assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
            assert set(r.json()["error"]) >= {"code", "message"}, r.text


def test_score_quality_reports_codes_per_example(live_api):
    api = live_api(worker=False)
    with api.client() as c:
        r = c.post("/api/finetuning/phase1/score-quality",
                   json={"examples": [GOOD, {"messages": []}, {"instruction": "Say hi", "output": "Hi!"}]})
    body = r.json()
    assert r.status_code == 200 and body["count"] == 3 and body["valid"] == 2
    assert [e["valid"] for e in body["examples"]] == [True, False, True]
    assert body["examples"][1]["findings"][0]["code"] == "empty_messages"
    assert body["examples"][0]["scores"]["guide"] == 20 + 15


@pytest.mark.slow
def test_guide_phases_through_the_api(live_api):
    api = live_api()
    with api.client() as c:
        gen = c.post("/api/finetuning/phase1/generate-tool-examples", json={"n": 120, "seed": 1}).json()
        data = upload(c, "sharegpt.json", (ASSETS / "layouts" / "sharegpt.json").read_bytes())
        assert data.status_code == 201, data.text
        inputs = [gen["path"], data.json()["path"]]
        job = c.post("/api/finetuning/phase1/create-validation-split", json={"inputs": inputs, "seed": 1})
        assert job.status_code == 202
        done = api.wait_job(job.json()["job_id"])
        assert done["status"] == "succeeded", done
        dataset_id = done["result"]["dataset_id"]
        assert c.get(f"/api/datasets/{dataset_id}").json()["counts"]["balanced"] is True

        conf = c.post("/api/finetuning/phase2/configure", json={"config": {
            "model": {"name_or_path": "tiny"}, "data": {"train": ["uploads/x.jsonl"]}, "method": "lora"}})
        assert conf.status_code == 200, conf.text
        conf = conf.json()
        assert conf["memory"]["total_gb"] > 0 and conf["config"]["lora"]["r"] > 0
        scripts = c.post("/api/finetuning/phase2/generate-scripts", json={"config_id": conf["config_id"]})
        assert scripts.status_code == 200, scripts.text
        script = c.get("/api/finetuning/phase2/training-script", params={"config_id": conf["config_id"]})
        assert script.status_code == 200 and "peft" in script.text
        assert "transformers==" in c.get("/api/finetuning/phase2/requirements").text

        train = c.post("/api/jobs", json={"kind": "train", "spec": {
            "dataset_id": dataset_id, "overrides": {"model.name_or_path": "tiny", "training.epochs": 2,
                                                   "training.time_budget": None, "training.eval_tool_sample": 0}}})
        trained = api.wait_job(train.json()["job_id"])
        assert trained["status"] == "succeeded", trained
        reg = c.post("/api/finetuning/phase3/register-model",
                     json={"name": "lightdom", "job_id": trained["id"], "alias": "challenger"})
        assert reg.status_code == 201, reg.text
        assert reg.json()["version"] == 1 and reg.json()["dataset_id"] == dataset_id
        models = c.get("/api/finetuning/phase3/models").json()["models"]
        assert models[0]["name"] == "lightdom" and models[0]["aliases"] == {"challenger": 1}
        versions = c.get("/api/finetuning/phase3/versions/lightdom").json()
        assert versions["versions"][0]["artifact_sha256"] and versions["alias_log"][0]["to"] == 1

        with c.stream("GET", f"/api/jobs/{trained['id']}/events", params={"follow": "true"}) as stream:
            kinds = [line[len("event: "):] for line in stream.iter_lines() if line.startswith("event: ")]
        assert kinds[0] == "status" and "progress" in kinds and kinds[-1] == "end"

        pipe = c.post("/api/finetuning/run-pipeline", json={
            "generate": {"n": 100}, "train": {"overrides": {"training.epochs": 2, "training.time_budget": None,
                                                          "training.eval_tool_sample": 0}}, "eval": {"limit": 8},
            "register": {"name": "lightdom", "alias": "champion"}})
        assert pipe.status_code == 202, pipe.text
        ran = api.wait_job(pipe.json()["job_id"])
        assert ran["status"] == "succeeded", ran
        assert ran["result"]["register"]["ref"] == "lightdom:2"
        assert set(ran["result"]["eval"]["tool_name_accuracy"]) == {"base", "trained", "delta"}
        assert c.get("/api/models/lightdom@champion").json()["version"] == 2


@pytest.mark.slow
def test_200_concurrent_mixed_requests_lose_nothing(live_api, database):
    api = live_api(worker=False)  # jobs stay queued: every one must exist exactly once

    def one(k: int) -> tuple[str, int, dict]:
        with api.client() as c:
            kind = k % 4
            if kind == 0:
                r = c.post("/api/jobs", json={"kind": "prepare", "spec": {"inputs": [], "n": k}})
                return "submit", r.status_code, r.json()
            if kind == 1:
                r = c.get("/api/jobs", params={"limit": 1000})
                return "list", r.status_code, {}
            if kind == 2:
                r = c.post("/api/finetuning/continuous/add-example", json={"examples": [GOOD, {"messages": []}]})
                return "add", r.status_code, r.json()
            r = c.get("/api/finetuning/continuous/status")
            return "status", r.status_code, r.json()

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(200)))
    assert all(code < 500 for _, code, _ in results), [r for r in results if r[1] >= 500][:3]
    assert all(code in (200, 202) for _, code, _ in results), [r for r in results if r[1] not in (200, 202)][:3]
    submitted = [body["job_id"] for what, _, body in results if what == "submit"]
    with api.client() as c:
        listed = [j["id"] for j in c.get("/api/jobs", params={"limit": 1000}).json()["jobs"]]
        status = c.get("/api/finetuning/continuous/status").json()
    assert len(submitted) == 50 and sorted(listed) == sorted(submitted)  # each exactly once
    assert status["buffered"] == 50 and status["rejected_total"] == 50  # every example kept, none lost


@pytest.mark.slow
def test_openapi_fuzzing_finds_no_server_error(live_api):
    api = live_api(worker=False)
    exe = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run([str(exe), "run", f"{api.url}/openapi.json", "--checks", "not_a_server_error",
                           "--phases", "coverage,fuzzing", "--max-examples", "8", "-w", "2", "--request-timeout", "120",
                           "--exclude-path-regex", "events"],
                          capture_output=True, text=True, timeout=600)
    tail = proc.stdout[-3000:]
    marks = [proc.stdout.find(m) for m in ("ERRORS", "FAILURES") if m in proc.stdout]
    failures = proc.stdout[min(marks):][:4000] if marks else tail
    assert proc.returncode == 0, failures
    assert "passed" in tail and " failed" not in tail.split("Test cases:")[-1], tail
