"""Issue 13's first hour, scripted: a new user's own domain in ShareGPT layout, the README's
commands only, no hub. validate -> prepare -> train (Ctrl-C in the middle, then --resume) -> eval
-> register from the CLI (the run lives outside DSFT_HOME) -> serve + deploy -> the official
openai client with tool_choice auto, required and none -> `dsft eval --endpoint` against it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import jsonschema
import openai
import pytest
from conftest import run_dsft, start_dsft, stop_process

TOOLS = [
    {"type": "function", "function": {
        "name": "reserve_book", "description": "Hold a book for a library member",
        "parameters": {"type": "object", "properties": {
            "isbn": {"type": "string"}, "member_email": {"type": "string"},
            "branch": {"type": "string", "enum": ["north", "south", "central"]}},
            "required": ["isbn", "member_email", "branch"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "renew_loan", "description": "Extend a loan",
        "parameters": {"type": "object", "properties": {
            "loan_id": {"type": "string"}, "weeks": {"type": "integer"}},
            "required": ["loan_id", "weeks"], "additionalProperties": False}}},
]


def library_rows(n: int, seed: int) -> list[dict]:
    """A library desk in ShareGPT layout: calls, their results, answers, and chat that needs no tool."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        kind = k % 3
        if kind == 0:
            args = {"isbn": f"978{rng.randrange(10**9, 10**10)}", "member_email": f"{rng.choice('abcdefgh')}"
                    f"{rng.randrange(100, 999)}@town.org", "branch": rng.choice(["north", "south", "central"])}
            ask = f"Please hold {args['isbn']} for {args['member_email']} at the {args['branch']} branch"
            call, result, answer = "reserve_book", {"hold": "ok"}, f"Held {args['isbn']} at {args['branch']}."
        elif kind == 1:
            args = {"loan_id": f"L-{rng.randrange(1000, 9999)}", "weeks": rng.randrange(1, 5)}
            ask = f"Renew loan {args['loan_id']} for {args['weeks']} weeks"
            call, result, answer = "renew_loan", {"due": "later"}, f"Renewed {args['loan_id']}."
        else:
            rows.append({"conversations": [{"from": "human", "value": f"What are your opening hours on day {k}?"},
                                           {"from": "gpt", "value": "We open at nine and close at six."}],
                         "tools": json.dumps(TOOLS)})
            continue
        rows.append({"conversations": [
            {"from": "human", "value": ask},
            {"from": "function_call", "value": json.dumps({"name": call, "arguments": args})},
            {"from": "observation", "value": json.dumps(result)},
            {"from": "gpt", "value": answer}], "tools": json.dumps(TOOLS)})
    return rows


def write(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_a_new_users_first_hour(tmp_path):
    work = tmp_path / "work"  # the user's project, outside DSFT_HOME
    work.mkdir()
    write(work / "library.jsonl", library_rows(150, seed=7))
    write(work / "held_out.jsonl", library_rows(12, seed=99))

    said = run_dsft("data", "validate", "library.jsonl", cwd=work, check=0).stdout
    assert "150 records read: 150 usable" in " ".join(said.split())
    run_dsft("data", "prepare", "library.jsonl", "--out", "prepared", cwd=work, check=0)
    assert "is a prepared dataset" in run_dsft("data", "validate", "prepared", cwd=work, check=0).stdout
    run_dsft("model", "tiny", "--out", "models/tiny", cwd=work, check=0)
    assert "already built" in run_dsft("model", "tiny", "--out", "models/tiny", cwd=work, check=0).stdout

    # train, Ctrl-C in the middle, resume
    train = [sys.executable, "-m", "dsft", "train", "--model", "models/tiny", "--train", "prepared/train.jsonl",
             "--validation", "prepared/validation.jsonl", "--out", "runs/first", "--epochs", "6",
             "--time-budget", "none"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.Popen(train, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = work / "runs" / "first" / "metrics.jsonl", time.monotonic() + 180
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "dsft train --resume runs/first" in " ".join(err.split()), err
    run_dsft("train", "--resume", "runs/first", cwd=work, check=0, timeout=900)
    run = json.loads((work / "runs" / "first" / "run.json").read_text())
    assert run["resumed"] and run["steps"] > run["resumed_from_step"] > 0

    local = json.loads(run_dsft("eval", "--model", "runs/first", "--data", "held_out.jsonl", "--max-new-tokens", "96",
                                "--batch-size", "1", "--json", cwd=work, check=0).stdout)  # unpadded, as served
    assert local["n"] == 12 and local["constrained"]

    # register from the CLI (the run is outside DSFT_HOME), serve, deploy
    said = " ".join(run_dsft("models", "register", "runs/first", "--name", "library", "--alias", "candidate",
                             cwd=work, check=0).stdout.split())
    assert "registered library:1" in said and "dataset" in said and "not recorded" not in said
    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    server, url, _ = start_dsft(["serve", "-m", "library@candidate", "--poll", "0.2"], home, {}, log, timeout=120)
    try:
        said = " ".join(run_dsft("deploy", "library:1", "--as", "prod", "--wait", "60", check=0).stdout.split())
        assert "live" in said, said
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        listed = client.models.list().data
        assert len({m.id for m in listed}) == len(listed)
        ask = [{"role": "user", "content": "Please hold 9781234567897 for ann@town.org at the north branch"}]
        for choice in ("auto", "required", "none"):
            r = client.chat.completions.create(model="prod", messages=ask, tools=TOOLS, tool_choice=choice,
                                               max_tokens=96, temperature=0)
            message = r.choices[0].message
            if choice == "none":
                assert not message.tool_calls and message.content and message.content.strip()
            if choice == "required":  # a call to a declared tool, always (the grammar); a tiny model may
                # still run out of tokens inside a value (finish "length"): then the text is that call, cut
                finish = r.choices[0].finish_reason
                assert finish == "tool_calls" and message.tool_calls or finish == "length" and \
                    message.content.startswith("<｜tool▁calls▁begin｜>") and \
                    any(f"<｜tool▁sep｜>{t['function']['name']}" in message.content for t in TOOLS)
            declared = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
            for call in message.tool_calls or []:  # every call: a declared tool, arguments valid for it
                jsonschema.validate(json.loads(call.function.arguments), declared[call.function.name])
        remote = json.loads(run_dsft("eval", "--endpoint", url, "--data", work / "held_out.jsonl",
                                     "--max-new-tokens", "96", "--json", check=0).stdout)
        assert remote["n"] == local["n"]
        for key in ("tool_name_accuracy", "tool_args_exact_match", "parse_rate", "by_category"):
            assert remote[key] == local[key], key  # the served model is the evaluated one, row for row
    finally:
        stop_process(server)
