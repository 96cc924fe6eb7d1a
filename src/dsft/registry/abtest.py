"""A/B tests: versions share a model's traffic by weight, and the numbers decide.

Assignment is a stable hash of (test, user): a user always sees the same variant, on every
gateway, and the API can attribute a client's outcome to a variant from the user alone. Gateways
add request counts, errors, latency and tokens; clients report outcomes (success, or a rating).

Results per variant: counts and rates with Wilson 95% intervals, mean ratings and latencies with
their standard deviations, the Bayesian probability that each variant is best (Beta posteriors,
for reading). The decision is abstats.decide: an always-valid sequential test (mSPRT), so a test may
be read after every outcome without inflating false winners; a winner needs `min_samples` in every
variant and a difference the test is sure of at `alpha`; `auto_promote` then moves the alias.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from typing import Any

from sqlalchemy import select, update

from dsft.errors import UserError
from dsft.registry import abstats, db, store
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
                tokens_in: int = 0, tokens_out: int = 0, url: str | None = None, latency_ms_sq: float | None = None) -> None:
    """Add a gateway's counts; `latency_ms` is the sum of the requests' latencies and `latency_ms_sq`
    the sum of their squares (its square when one request is added)."""
    if latency_ms_sq is None:
        if requests > 1:
            raise ValueError("give latency_ms_sq (the sum of squared latencies) when adding several requests")
        latency_ms_sq = latency_ms * latency_ms
    with db.session(url) as s:
        s.execute(update(AbStat).where(AbStat.test_id == test_id, AbStat.variant == variant).values(
            requests=AbStat.requests + requests, errors=AbStat.errors + errors,
            latency_ms_sum=AbStat.latency_ms_sum + latency_ms,
            latency_ms_sq_sum=AbStat.latency_ms_sq_sum + latency_ms_sq, tokens_in=AbStat.tokens_in + tokens_in,
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
            rating_sum=AbStat.rating_sum + (rating or 0.0), rating_sq_sum=AbStat.rating_sq_sum + (rating or 0.0) ** 2))
    return variant


# ---------------------------------------------------------------- statistics (abstats)

wilson, two_proportion_p, prob_best = abstats.wilson, abstats.two_proportion_p, abstats.prob_best


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
    rows, arms = [], []
    for v in variants:
        st = stats[v["name"]]
        rate = st.successes / st.outcomes if st.outcomes else None
        lo, hi = wilson(st.successes, st.outcomes)
        latency, latency_var = abstats.moments(st.latency_ms_sum, st.latency_ms_sq_sum, st.requests)
        rating, rating_var = abstats.moments(st.rating_sum, st.rating_sq_sum, st.outcomes)
        rows.append({**v, "requests": st.requests, "errors": st.errors,
                     "error_rate": st.errors / st.requests if st.requests else None,
                     "latency_ms_mean": latency, "latency_ms_sd": _sd(latency_var),
                     "tokens_in": st.tokens_in, "tokens_out": st.tokens_out, "outcomes": st.outcomes,
                     "successes": st.successes, "rate": rate, "rate_ci95": [lo, hi],
                     "rating_mean": rating, "rating_sd": _sd(rating_var)})
        arms.append({"outcome_rate": (*abstats.bernoulli(st.successes, st.outcomes), st.outcomes),
                     "rating": (rating, rating_var, st.outcomes),
                     "latency": (latency, latency_var, st.requests)}[test_dict["metric"]])
    decision = _decide(test_dict, rows, arms)
    out = {**test_dict, "variants": rows, **decision}
    if promote and decision["winner"] and test_dict["status"] == "running":
        _conclude(test_dict, decision["winner"], rows, url)
        out["status"], out["winner"] = "decided", decision["winner"]
        if test_dict["auto_promote"]:
            out["promoted"] = f"{test_dict['model']}@{test_dict['alias']} -> {decision['winner_version']}"
    return out


def _sd(var: float | None) -> float | None:
    return math.sqrt(var) if var is not None else None


def _decide(test: dict[str, Any], rows: list[dict[str, Any]], arms: list[tuple]) -> dict[str, Any]:
    """abstats.decide on the arms of the test's metric ((mean, variance, n) per row), and what it
    means in words; one-look p-values beside."""
    metric, alpha = test["metric"], test["alpha"]
    rule = abstats.decide(arms, alpha, test["min_samples"], higher_is_better=metric != "latency")
    best = rule["leader"]
    enough = rule.get("undecided") != "samples"
    out: dict[str, Any] = {"leader": rows[best]["name"], "enough_samples": enough, "test": "mSPRT (always valid)",
                           "threshold": rule["threshold"],
                           "p_values": {rows[j]["name"]: p for j, p in rule["p"].items()}}
    if metric == "outcome_rate":
        for r, p in zip(rows, abstats.prob_best([(r["successes"], r["outcomes"]) for r in rows])):
            r["prob_best"] = p
        one_look = {r["name"]: abstats.two_proportion_p(rows[best]["successes"], rows[best]["outcomes"],
                                                         r["successes"], r["outcomes"])
                    for k, r in enumerate(rows) if k != best}
    else:
        m0, v0, n0 = arms[best]
        one_look = {rows[j]["name"]: abstats.welch_p(m0, v0, n0, m, v, n)
                    for j, (m, v, n) in enumerate(arms) if j != best and None not in (m0, v0, m, v) and min(n0, n) > 1}
    out["p_values_one_look"] = one_look
    won = rule["winner"] is not None
    out["winner"] = rows[best]["name"] if won else None
    out["winner_version"] = rows[best]["version"] if won else None
    if won:
        out["recommendation"] = f"{rows[best]['name']} (version {rows[best]['version']}) wins on {metric}"
    elif not enough:
        have = min(n for _, _, n in arms)
        out["recommendation"] = f"keep collecting: {have} of {test['min_samples']} samples in the smallest variant"
    elif rule["undecided"] == "variance":
        out["recommendation"] = ("the variances of this test's means are unknown (it started before dsft stored "
                                 "squares): start a new test to decide on " + metric)
    else:
        out["recommendation"] = f"no significant difference yet at alpha {alpha} (sequential test): keep collecting"
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
