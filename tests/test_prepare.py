"""`prepare`: nothing lost, reproducible ids, filters, and the report."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import ASSETS, read_jsonl, run_dsft

from dsft.data.generate import builtin, generate, load_scenarios
from dsft.data.layouts import load_tools
from dsft.data.pipeline import Options
from dsft.data.prepare import prepare
from dsft.errors import UserError

SAMPLES = builtin("samples")


def test_every_row_lands_in_exactly_one_file(tmp_path):
    inputs = [ASSETS / "layouts", SAMPLES, *(ASSETS / "bad").glob("[a-z]*_*.jsonl")]
    res = prepare(inputs, tmp_path / "ds")
    c = res.report["counts"]
    files = {name: read_jsonl(tmp_path / "ds" / f"{name}.jsonl") for name in ("train", "validation", "rejects", "duplicates")}
    assert c["read"] == sum(len(v) for v in files.values()) and c["balanced"]
    assert (c["train"], c["validation"], c["rejected"], c["duplicates"]) == tuple(len(files[k]) for k in files)
    assert c["validation"] >= 1
    origins = [r["metadata"]["dsft"]["origin"] for k in ("train", "validation") for r in files[k]]
    origins += [f"{r['file']}:{r['line']}" for k in ("rejects", "duplicates") for r in files[k]]
    assert len(origins) == c["read"]
    repeated = {o for o in origins if origins.count(o) > 1}
    assert {o.rsplit("/", 1)[1] for o in repeated} == {"pretty.jsonl:14"}  # two records on that one line
    dup = files["duplicates"][0]
    assert dup["duplicate_of"]["line"] and dup["conversation"]["messages"]
    assert set(res.report["layouts"]) == {"chat", "instruction", "completion", "text", "sharegpt"}
    assert (tmp_path / "ds" / "report.md").read_text().count("|") > 20


def test_dataset_id_is_reproducible_and_checkable(tmp_path):
    a = prepare([SAMPLES], tmp_path / "a", seed=3)
    b = prepare([SAMPLES], tmp_path / "b", seed=3)
    assert a.dataset_id == b.dataset_id
    train, val = ((tmp_path / "a" / f).read_bytes() for f in ("train.jsonl", "validation.jsonl"))
    expected = hashlib.sha256(b"train\n" + hashlib.sha256(train).digest()
                              + b"validation\n" + hashlib.sha256(val).digest()).hexdigest()
    assert a.dataset_id == expected
    rows = generate(load_scenarios(), 100, seed=0)
    src = tmp_path / "gen.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert prepare([src], tmp_path / "s1", seed=1).dataset_id != prepare([src], tmp_path / "s2", seed=2).dataset_id


def test_out_is_never_overwritten_without_force(tmp_path):
    prepare([SAMPLES], tmp_path / "ds")
    with pytest.raises(UserError, match="already exists"):
        prepare([SAMPLES], tmp_path / "ds")
    prepare([SAMPLES], tmp_path / "ds", force=True)


def test_min_quality_rejects_with_a_code_and_near_dup(tmp_path):
    rows = generate(load_scenarios(), 60, seed=1)
    src = tmp_path / "gen.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = prepare([src], tmp_path / "q", Options(min_quality=101), val_ratio=0.1)
    assert res.report["counts"]["rejected"] == 60
    assert read_jsonl(tmp_path / "q" / "rejects.jsonl")[0]["codes"] == ["low_quality"]
    near = prepare([src], tmp_path / "n", Options(near_dup=0.5))
    assert near.report["counts"]["duplicates"] > 0
    assert near.report["counts"]["balanced"]


def test_tools_file_attaches_declarations(tmp_path):
    tools = load_tools(builtin("lightdom_tools.json"))
    plain = prepare([SAMPLES / "guide_examples.jsonl"], tmp_path / "a")
    assert "tools_not_declared" in plain.report["findings"]
    withtools = prepare([SAMPLES / "guide_examples.jsonl"], tmp_path / "b", Options(tools=tools))
    assert "tools_not_declared" not in withtools.report["findings"]
    row = read_jsonl(tmp_path / "b" / "train.jsonl")[0]
    assert row["tools"][0]["name"] == "mineAttribute"


def test_report_token_stats_with_a_real_tokenizer(tmp_path):
    """--tokenizer counts with a Hugging Face tokenizer built here (no hub)."""
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    proc = run_dsft("data", "prepare", SAMPLES / "guide_instructions.jsonl", "--out", tmp_path / "ds",
                    "--tokenizer", tmp_path / "tok", "--json", check=0)
    tokens = json.loads(proc.stdout)["tokens"]
    assert tokens["method"].startswith("tokenizer") and tokens["max"] > tokens["p5"] > 0


def test_cli_prepare_prints_report_and_rejects_bad_flags(tmp_path):
    proc = run_dsft("data", "prepare", SAMPLES, "--out", tmp_path / "ds", check=0)
    assert "adds up" in proc.stdout and "dataset" in proc.stdout
    proc = run_dsft("data", "prepare", SAMPLES, "--out", tmp_path / "x", "--val-ratio", "1.5", check=2)
    assert "--val-ratio" in proc.stderr
    proc = run_dsft("data", "prepare", SAMPLES, "--out", tmp_path / "x", "--format", "alpaca", check=2)
    assert "use one of" in proc.stderr


def test_identical_assistant_replies_is_a_dataset_warning(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Question {k}?"},
                          {"role": "assistant", "content": "I cannot help with that."}]} for k in range(12)]
    src = tmp_path / "same.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = prepare([src], tmp_path / "ds")
    assert res.report["findings"]["identical_assistant_replies"]["count"] == 1
    proc = run_dsft("data", "validate", src, check=0)
    assert "identical_assistant_replies" in proc.stdout


@pytest.mark.parametrize("forced_fallback", [False, True])
def test_the_one_pass_split_writes_the_exact_stratified_split(tmp_path, monkeypatch, forced_fallback):
    from dsft.data import prepare as prepare_module
    from dsft.data.dedup import digest, normal_form
    from dsft.data.split import StreamingSplit, validation_rows

    outcomes = []

    class Recorded(StreamingSplit):
        def __init__(self, ratio, seed):  # a bound at the ratio itself: cuts land beyond it, train.jsonl is rebuilt
            super().__init__(ratio, seed, **({"sigmas": 0.0, "slack": 0.0} if forced_fallback else {}))

        def choose(self):
            chosen, complete = super().choose()
            outcomes.append(complete)
            return chosen, complete

    monkeypatch.setattr(prepare_module, "StreamingSplit", Recorded)
    src = tmp_path / "gen.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in generate(load_scenarios(), 400, seed=4)) + "\n")
    res = prepare([src], tmp_path / "ds", val_ratio=0.2, seed=9)
    train, val = (read_jsonl(tmp_path / "ds" / f"{n}.jsonl") for n in ("train", "validation"))
    kept = sorted(train + val, key=lambda r: int(r["metadata"]["dsft"]["origin"].rsplit(":", 1)[1]))
    strata = [r["metadata"]["dsft"]["task_type"] for r in kept]
    digests = [digest(normal_form({k: v for k, v in r.items() if k != "metadata"})) for r in kept]
    expected = validation_rows(strata, digests, 0.2, seed=9)
    assert [kept.index(r) for r in val] == sorted(expected), "validation: exactly the chosen rows, in input order"
    assert res.report["counts"]["validation"] == len(expected) == round(0.2 * len(kept))
    lines = [int(r["metadata"]["dsft"]["origin"].rsplit(":", 1)[1]) for r in train]
    split_at = next((k for k in range(1, len(lines)) if lines[k] < lines[k - 1]), len(lines))
    assert lines[:split_at] == sorted(lines[:split_at]) and lines[split_at:] == sorted(lines[split_at:]), \
        "train: rows never held aside in input order, then the held-aside ones in input order"
    again = prepare([src], tmp_path / "again", val_ratio=0.2, seed=9)
    assert again.dataset_id == res.dataset_id
    assert not list((tmp_path / "ds").glob("*.tmp"))
    assert outcomes == [not forced_fallback] * 2


def test_validate_speaks_the_users_layout_and_reads_a_prepared_folder(tmp_path):
    """Issue 13: the table shows each finding's precise message at the user's own position
    (`conversations[1]`, not the converted `messages[2]`); usable rows are counted with and without
    the duplicates `prepare` drops; a folder `prepare` wrote validates as its train/validation."""
    def row(k: int, **turn) -> dict:
        turns = [{"from": "human", "value": f"book room {k}"}, {"from": "gpt", "value": f"Booked room {k}."}]
        if turn:
            turns[1] = turn
        return {"system": "You book rooms.", "conversations": turns}

    rows = [row(k) for k in range(40)] + [row(0), row(1)]  # two duplicates
    rows += [row(90, **{"from": "narrator", "value": "x"}), row(91, **{"from": "gpt", "value": ""})]
    data = tmp_path / "rooms.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    said = " ".join(run_dsft("data", "validate", data.name, cwd=tmp_path, check=1).stdout.split())
    assert "44 records read: 42 usable (40 once the 2 duplicates are dropped, as `data prepare` does)" in said
    assert "conversations[1].from is 'narrator'; use human, gpt" in said
    assert "rooms.jsonl:44: conversations[1] (assistant) has no content" in said, "the user's position, not messages[2]"

    run_dsft("data", "prepare", data, "--out", tmp_path / "ds", check=0)
    assert (tmp_path / "ds" / "rejects.jsonl").stat().st_size and (tmp_path / "ds" / "report.json").exists()
    proc = run_dsft("data", "validate", tmp_path / "ds", check=0)
    said = " ".join(proc.stdout.split())
    assert "is a prepared dataset: reading train.jsonl and validation.jsonl" in said
    assert "40 records read: 40 usable" in said and "unknown_layout" not in said
    checked = json.loads(run_dsft("data", "validate", tmp_path / "ds", "--json", check=0).stdout)
    assert checked["counts"]["read"] == 40 and checked["layouts"] == {"chat": 40}
