"""A/B tests: versions share a model's traffic by weight, and the numbers decide.

Assignment is a stable hash of (test, user): a user always sees the same variant, on every
gateway, and the API can attribute a client's outcome to a variant from the user alone. Gateways
add request counts, errors, latency and tokens; clients report outcomes (success, or a rating).

Results per variant: counts and rates with Wilson 95% intervals; the best variant against each
other with a two-proportion z-test (outcome rates) or Welch's t (ratings, latency as a mean);
the Bayesian probability that each variant is best (Beta posteriors, Monte Carlo). A winner is
declared only when every variant has `min_samples` outcomes and the best beats every other at
`alpha`; `auto_promote` then moves the alias to the winner.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from typing import Any

from sqlalchemy import select, update

from dsft.errors import UserError
from dsft.registry import db, store
from dsft.registry.schema import AbStat, AbTest

METRICS = ("outcome_rate", "rating", "latency")


def assign(test_id: str, variants: list[dict[str, Any]], user: str | None) -> str:
    """The variant for `user`: sticky, proportional to the weights."""
    if user is None:
        user = uuid.uuid4().hex  # anonymous: a fresh draw each time
    h = int.from_bytes(hashlib.sha256(f"{test_id}\0{user}".encode()).digest()[:8], "big") / 2**64
    total = sum(v["weight"] for v in variants)
    acc = 0.0
    for v in variants:
        acc += v["weight"] / total
        if h < acc:
            return v["name"]
    return variants[-1]["name"]


def create(model: str, variants: list[dict[str, Any]], metric: str = "outcome_rate", min_samples: int = 100,
           alpha: float = 0.05, auto_promote: bool = False, alias: str = "champion", url: str | None = None) -> AbTest:
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    if len(variants) < 2:
        raise UserError("an A/B test needs two or more variants", "give e.g. [{version: 1}, {version: 2}]")
    store.check_name(alias, "alias")
    clean = []
    with db.session(url) as s:
        for k, v in enumerate(variants):
            ref = v.get("ref") or f"{model}:{v.get('version')}"
            mv = store.resolve(s, ref)
            if mv.name != model:
                raise UserError(f"variant {ref} is not a version of {model}", "all variants must share the model name")
            weight = float(v.get("weight", 1.0))
            if not weight > 0:
                raise UserError(f"variant {ref} has weight {weight}", "weights must be positive")
            clean.append({"name": v.get("name") or "ABCDEFGHIJ"[k], "version": mv.version, "weight": weight})
        if len({v["name"] for v in clean}) != len(clean):
            raise UserError("variant names repeat", "give each variant its own name")
        running = s.scalars(select(AbTest).where(AbTest.model == model, AbTest.status == "running")).first()
        if running is not None:
            raise UserError(f"{model} already has a running A/B test ({running.id})", "stop it first")
        test = AbTest(id=str(uuid.uuid4()), model=model, variants=clean, metric=metric, min_samples=min_samples,
                      alpha=alpha, auto_promote=auto_promote, alias=alias, status="running")
        s.add(test)
        s.flush()  # the test row first: its stats refer to it
        for v in clean:
            s.add(AbStat(test_id=test.id, variant=v["name"]))
    return test


def running(url: str | None = None) -> list[AbTest]:
    with db.session(url) as s:
        return list(s.scalars(select(AbTest).where(AbTest.status == "running")))


def add_traffic(test_id: str, variant: str, requests: int = 0, errors: int = 0, latency_ms: float = 0.0,
                tokens_in: int = 0, tokens_out: int = 0, url: str | None = None) -> None:
    with db.session(url) as s:
        s.execute(update(AbStat).where(AbStat.test_id == test_id, AbStat.variant == variant).values(
            requests=AbStat.requests + requests, errors=AbStat.errors + errors,
            latency_ms_sum=AbStat.latency_ms_sum + latency_ms, tokens_in=AbStat.tokens_in + tokens_in,
            tokens_out=AbStat.tokens_out + tokens_out))


def outcome(test_id: str, user: str | None = None, variant: str | None = None, success: bool | None = None,
            rating: float | None = None, url: str | None = None) -> str:
    """Record one client outcome; the variant comes from the user's assignment unless given."""
    if success is None and rating is None:
        raise UserError("an outcome needs success or rating", 'send {"user": ..., "success": true}')
    with db.session(url) as s:
        test = s.get(AbTest, test_id)
        if test is None:
            raise UserError(f"no A/B test {test_id}", "see GET /api/finetuning/phase3/ab-test", exit_code=1)
        names = [v["name"] for v in test.variants]
        if variant is None:
            if user is None:
                raise UserError("give the user the request was made for (or the variant)", 'send {"user": "u1", ...}')
            variant = assign(test.id, test.variants, user)
        elif variant not in names:
            raise UserError(f"no variant {variant!r} in test {test_id}", f"use one of {', '.join(names)}")
        s.execute(update(AbStat).where(AbStat.test_id == test_id, AbStat.variant == variant).values(
            outcomes=AbStat.outcomes + 1, successes=AbStat.successes + (1 if success else 0),
            rating_sum=AbStat.rating_sum + (rating or 0.0)))
    return variant


# ---------------------------------------------------------------- statistics

def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float:
    """Two-sided p-value of H0: equal rates (pooled z-test)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (s1 / n1 - s2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def prob_best(stats: list[tuple[int, int]], draws: int = 20000, seed: int = 0) -> list[float]:
    """P(each variant has the highest rate) under Beta(1 + s, 1 + n - s) posteriors."""
    rng = random.Random(seed)
    wins = [0] * len(stats)
    for _ in range(draws):
        samples = [rng.betavariate(1 + s, 1 + n - s) for s, n in stats]
        wins[max(range(len(samples)), key=samples.__getitem__)] += 1
    return [w / draws for w in wins]


def results(test_id: str, url: str | None = None, promote: bool = True) -> dict[str, Any]:
    with db.session(url) as s:
        test = s.get(AbTest, test_id)
        if test is None:
            raise UserError(f"no A/B test {test_id}", "see the A/B test list", exit_code=1)
        stats = {st.variant: st for st in s.scalars(select(AbStat).where(AbStat.test_id == test_id))}
        test_dict = {"id": test.id, "model": test.model, "metric": test.metric, "min_samples": test.min_samples,
                     "alpha": test.alpha, "auto_promote": test.auto_promote, "alias": test.alias,
                     "status": test.status, "winner": test.winner, "created": test.created.isoformat()}
        variants = list(test.variants)
    rows = []
    for v in variants:
        st = stats[v["name"]]
        rate = st.successes / st.outcomes if st.outcomes else None
        lo, hi = wilson(st.successes, st.outcomes)
        rows.append({**v, "requests": st.requests, "errors": st.errors,
                     "error_rate": st.errors / st.requests if st.requests else None,
                     "latency_ms_mean": st.latency_ms_sum / st.requests if st.requests else None,
                     "tokens_in": st.tokens_in, "tokens_out": st.tokens_out, "outcomes": st.outcomes,
                     "successes": st.successes, "rate": rate, "rate_ci95": [lo, hi],
                     "rating_mean": st.rating_sum / st.outcomes if st.outcomes else None})
    decision = _decide(test_dict, rows)
    out = {**test_dict, "variants": rows, **decision}
    if promote and decision["winner"] and test_dict["status"] == "running":
        _conclude(test_dict, decision["winner"], rows, url)
        out["status"], out["winner"] = "decided", decision["winner"]
        if test_dict["auto_promote"]:
            out["promoted"] = f"{test_dict['model']}@{test_dict['alias']} -> {decision['winner_version']}"
    return out


def _decide(test: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    enough = all(r["outcomes"] >= test["min_samples"] for r in rows) if test["metric"] != "latency" else \
        all(r["requests"] >= test["min_samples"] for r in rows)
    if test["metric"] == "latency":
        key = [-(r["latency_ms_mean"] or math.inf) for r in rows]
    elif test["metric"] == "rating":
        key = [r["rating_mean"] if r["rating_mean"] is not None else -math.inf for r in rows]
    else:
        key = [r["rate"] if r["rate"] is not None else -1.0 for r in rows]
    best = max(range(len(rows)), key=key.__getitem__)
    out: dict[str, Any] = {"leader": rows[best]["name"], "enough_samples": enough}
    if test["metric"] == "outcome_rate":
        pbest = prob_best([(r["successes"], r["outcomes"]) for r in rows])
        for r, p in zip(rows, pbest):
            r["prob_best"] = p
        pvals = {r["name"]: two_proportion_p(rows[best]["successes"], rows[best]["outcomes"], r["successes"],
                                             r["outcomes"]) for k, r in enumerate(rows) if k != best}
        out["p_values"] = pvals
        significant = all(p < test["alpha"] for p in pvals.values())
    else:
        significant = True  # means without a test of their own: decided on samples alone
    won = enough and significant
    out["winner"] = rows[best]["name"] if won else None
    out["winner_version"] = rows[best]["version"] if won else None
    if won:
        out["recommendation"] = f"{rows[best]['name']} (version {rows[best]['version']}) wins on {test['metric']}"
    elif not enough:
        need = test["min_samples"]
        have = min(r["outcomes"] if test["metric"] != "latency" else r["requests"] for r in rows)
        out["recommendation"] = f"keep collecting: {have} of {need} samples in the smallest variant"
    else:
        out["recommendation"] = f"no significant difference yet at alpha {test['alpha']}: keep collecting"
    return out


def _conclude(test: dict[str, Any], winner: str, rows: list[dict[str, Any]], url: str | None) -> None:
    version = next(r["version"] for r in rows if r["name"] == winner)
    with db.session(url) as s:
        s.execute(update(AbTest).where(AbTest.id == test["id"], AbTest.status == "running")
                  .values(status="decided", winner=winner))
    if test["auto_promote"]:
        store.set_alias(test["model"], test["alias"], version, f"A/B test {test['id']}: {winner} won on {test['metric']}",
                        url)


def stop(test_id: str, url: str | None = None) -> None:
    with db.session(url) as s:
        s.execute(update(AbTest).where(AbTest.id == test_id, AbTest.status == "running").values(status="stopped"))
