"""Does `dsft train` with its defaults learn tool use that generalizes? One run, from scratch.

    python benchmarks/learning.py [--domains calendar,shipping,clinic] [--time-budget 10m]
        [--n-train 1500] [--n-test 200] [--variants aug,noaug] [--with-demo] [--out benchmarks/out/learning]
    python benchmarks/learning.py --generate-only     # only write and check the data (seconds)

Data (benchmarks/learning_tasks.py, stdlib `random`, fixed seed, byte-identical per seed): tool-use
conversations in domains dsft ships nothing about -- calendar (Northwind Corp scheduling),
shipping (Kestrel Freight logistics), clinic (Maplewood Clinic front desk) -- 4-5 tools each, typed
arguments (strings, integers, floats, enums, email arrays, nested objects, ISO dates/datetimes),
75 % single calls, 15 % parallel calls, 10 % requests that need no tool. What is held out:
  test.jsonl             seen phrasings, UNSEEN VALUES: every value pool is cut 2/3 train, 1/3 test,
                         and no test argument string (>= 4 chars, enums aside) occurs anywhere in
                         train.jsonl's text, no multi-digit test number is a training argument
                         number (asserted on the written files);
  test_paraphrase.jsonl  UNSEEN PHRASINGS (request templates, parallel connectors and no-tool
                         requests disjoint from training's) and unseen values.

Then, as a new user would with the README's commands (the `dsft` next to this Python):
  dsft model tiny --out OUT/model --force
  dsft train --model OUT/model --train OUT/DOMAIN/train.jsonl --out OUT/runs/DOMAIN-VARIANT
             --time-budget 10m  [--copy-augment 0 for the `noaug` variant]
  dsft eval --model RUN --data OUT/DOMAIN/test.jsonl --json   (and test_paraphrase)
--with-demo adds dsft's own LightDom data (`dsft data generate`, seeds 1 and 2): an IN-DOMAIN
reference row whose test values are not held out. Prints one table (stdout) and writes
OUT/results.json; progress and logs go to stderr and OUT/logs/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_tasks  # noqa: E402

DSFT = str(Path(sys.executable).parent / "dsft")
DEMO = "lightdom"  # the in-domain reference row


def log(msg: str) -> None:
    print(f"[learning] {msg}", file=sys.stderr, flush=True)


def run(args: list[str], log_file: Path) -> tuple[int, str, float]:
    """Run `dsft ARGS`; stderr (and stdout, which is also returned) go to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_file.open("w") as err:
        err.write("$ dsft " + " ".join(args) + "\n")
        err.flush()
        proc = subprocess.run([DSFT, *args], stdout=subprocess.PIPE, stderr=err, text=True)
        err.write(proc.stdout)
    seconds = time.perf_counter() - started
    if proc.returncode:
        tail = log_file.read_text().splitlines()[-15:]
        log(f"dsft {args[0]} failed (exit {proc.returncode}), {log_file}:\n    " + "\n    ".join(tail))
    return proc.returncode, proc.stdout, seconds


def evaluate(model: Path, data: Path, log_file: Path, max_new_tokens: int) -> dict | None:
    extra = ["--max-new-tokens", str(max_new_tokens)] if max_new_tokens else []  # default: the data's longest turn
    rc, out, seconds = run(["eval", "--model", str(model), "--data", str(data), "--json", *extra], log_file)
    if rc:
        return None
    text = out[out.index("{"):] if "{" in out else out
    metrics = json.loads(text)
    log(f"  eval {data.name}: names {metrics.get('tool_name_accuracy')}, exact {metrics.get('tool_args_exact_match')}, "
        f"irrelevance {metrics.get('irrelevance_accuracy')} ({seconds:.0f} s)")
    return metrics


def train_and_eval(domain: str, variant: str, a, out: Path) -> dict:
    data, run_dir = out / domain, out / "runs" / f"{domain}-{variant}"
    shutil.rmtree(run_dir, ignore_errors=True)
    extra = ["--copy-augment", "0"] if variant == "noaug" else []
    log(f"train {domain}-{variant} (budget {a.time_budget}) ...")
    rc, _, wall = run(["train", "--model", str(out / "model"), "--train", str(data / "train.jsonl"),
                       "--out", str(run_dir), "--time-budget", a.time_budget, *extra],
                      out / "logs" / f"{domain}-{variant}-train.log")
    row = {"domain": domain, "variant": variant, "train_rows": sum(1 for _ in open(data / "train.jsonl")),
           "train_wall_s": round(wall, 1), "train_rc": rc}
    run_json = run_dir / "run.json"
    if run_json.exists():
        info = json.loads(run_json.read_text())
        row.update(train_s=info.get("seconds"), steps=info.get("steps"), augmented_rows=info.get("augmented"),
                   train_examples=info.get("train_examples"), kept=info.get("kept"), schedule=info.get("schedule"))
    log(f"  trained in {wall:.0f} s wall (run.json: {row.get('train_s')} s, {row.get('steps')} steps, "
        f"{row.get('augmented_rows')} rows added by copy augmentation, kept {row.get('kept')})")
    if rc:
        return row
    for split in ("test", "test_paraphrase"):
        if (data / f"{split}.jsonl").exists():
            m = evaluate(run_dir, data / f"{split}.jsonl", out / "logs" / f"{domain}-{variant}-{split}.log",
                         a.max_new_tokens)
            row[split] = None if m is None else {k: m.get(k) for k in (
                "n", "parse_rate", "tool_name_accuracy", "tool_args_exact_match", "arg_f1", "irrelevance_accuracy",
                "by_category")}
    return row


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def on_calls(metrics: dict | None, key: str = "tool_args_exact_match") -> float | None:
    """`key` over the rows that need a call only: over all rows, a right "no call" counts as exact
    arguments too, and 10 % such rows would read as 0.10 exact for a model that copies nothing."""
    cats = {k: v for k, v in ((metrics or {}).get("by_category") or {}).items() if k != "no_call"}
    n = sum(v["n"] for v in cats.values())
    return sum(v["n"] * v[key] for v in cats.values()) / n if n else None


def table(rows: list[dict]) -> str:
    head = ["domain", "variant", "rows", "+aug", "steps", "train s", "names", "exact", "exact (call rows)", "irrel",
            "para names", "para exact (call rows)"]
    lines = []
    for r in rows:
        t, p = r.get("test") or {}, r.get("test_paraphrase") or {}
        label = r["domain"] + (" (in-domain)" if r["domain"] == DEMO else "")
        lines.append([label, r["variant"], fmt(r["train_rows"]), fmt(r.get("augmented_rows")), fmt(r.get("steps")),
                      f"{r.get('train_s') or r['train_wall_s']:.0f}" if not r["train_rc"] else "FAILED",
                      fmt(t.get("tool_name_accuracy")), fmt(t.get("tool_args_exact_match")), fmt(on_calls(t)),
                      fmt(t.get("irrelevance_accuracy")), fmt(p.get("tool_name_accuracy")), fmt(on_calls(p))])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    show = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([show(head), show(["-" * w for w in widths]), *map(show, lines)])


def comparison(rows: list[dict]) -> dict[str, str]:
    """aug vs noaug per domain, measured in this run."""
    out = {}
    for domain in dict.fromkeys(r["domain"] for r in rows):
        by = {r["variant"]: r for r in rows if r["domain"] == domain}
        if "aug" not in by or "noaug" not in by:
            continue
        parts = []
        for split, key, label in (("test", "tool_name_accuracy", "names"), ("test", "tool_args_exact_match", "exact"),
                                  ("test", "irrelevance_accuracy", "irrel"),
                                  ("test_paraphrase", "tool_args_exact_match", "para exact")):
            x, y = ((by[v].get(split) or {}).get(key) for v in ("aug", "noaug"))
            if x is not None and y is not None:
                ratio = f", x{x / y:.2f}" if y else ""
                parts.append(f"{label} {x:.3f} vs {y:.3f} ({x - y:+.3f}{ratio})")
        out[domain] = "aug vs noaug: " + ("; ".join(parts) or "no metrics")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default=",".join(learning_tasks.DOMAINS))
    ap.add_argument("--variants", default="aug,noaug")
    ap.add_argument("--time-budget", default="10m")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/learning"))
    ap.add_argument("--with-demo", action="store_true", help="also dsft's own LightDom data (in-domain reference)")
    ap.add_argument("--generate-only", action="store_true", help="write and check the data, train nothing")
    a = ap.parse_args()
    out, domains, variants = a.out, a.domains.split(","), a.variants.split(",")
    unknown = set(domains) - set(learning_tasks.DOMAINS)
    if unknown or not set(variants) <= {"aug", "noaug"}:
        sys.exit(f"unknown domain or variant: {sorted(unknown) or variants}")

    stats = {}
    for d in domains:
        started = time.perf_counter()
        stats[d] = learning_tasks.write(d, out / d, a.seed, a.n_train, a.n_test)
        log(f"data {d}: {json.dumps(stats[d])} ({time.perf_counter() - started:.1f} s, held-out values and "
            "phrasings and determinism checked)")
    if a.generate_only:
        print(json.dumps(stats, indent=2))
        return
    if a.with_demo:
        for file, n, seed in (("train.jsonl", a.n_train, 1), ("test.jsonl", a.n_test, 2)):
            if run(["data", "generate", "-n", str(n), "--out", str(out / DEMO / file), "--seed", str(seed)],
                   out / "logs" / f"{DEMO}-generate-{seed}.log")[0]:
                sys.exit("dsft data generate failed")
        domains.append(DEMO)
    if run(["model", "tiny", "--out", str(out / "model"), "--force"], out / "logs" / "model.log")[0]:
        sys.exit("dsft model tiny failed")

    rows = [train_and_eval(d, v, a, out) for d in domains for v in variants]
    compare = comparison(rows)
    print(f"held-out tool use, {a.time_budget} training budget each (names/exact/irrel: seen phrasings, unseen "
          "values; para: unseen phrasings, unseen values; lightdom: in-domain, values not held out)")
    print(table(rows))
    for domain, line in compare.items():
        print(f"{domain}: {line}")
    result = {"config": {k: str(v) for k, v in vars(a).items()}, "data": stats, "runs": rows, "aug_vs_noaug": compare}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    log(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
