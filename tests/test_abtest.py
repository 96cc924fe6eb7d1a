"""A/B statistics on a simulated population, assignment, and the guide's ab-test endpoints."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dsft.errors import UserError
from dsft.registry import abtest, db, store
from tests.test_registry import fake_run


@pytest.fixture
def fixed_test_id(monkeypatch):
    """Assignment hashes the test id: a fixed id makes a simulated run the same run every time."""
    import uuid

    monkeypatch.setattr(abtest.uuid, "uuid4", lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"))


@pytest.fixture
def two_versions(tmp_path):
    home = tmp_path / "home"
    for name in ("a", "b"):
        store.register(store.Registration("lightdom", fake_run(home, name)))
    yield
    db.dispose()


def test_assignment_is_sticky_and_follows_the_weights(two_versions):
    test = abtest.create("lightdom", [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}])
    users = [f"user-{k}" for k in range(20000)]
    first = [abtest.assign(test.id, test.variants, u) for u in users]
    assert first == [abtest.assign(test.id, test.variants, u) for u in users]  # sticky
    share = Counter(first)["B"] / len(users)
    assert abs(share - 0.20) < 0.015, share
    with pytest.raises(UserError, match="already has a running"):
        abtest.create("lightdom", [{"version": 1}, {"version": 2}])


def test_simulated_population_declares_b_after_enough_samples_and_not_before(two_versions, fixed_test_id):
    rng = random.Random(7)
    test = abtest.create("lightdom", [{"version": 1}, {"version": 2}], min_samples=400, auto_promote=True)
    truth = {"A": 0.30, "B": 0.40}
    verdicts = []
    for k in range(4000):
        user = f"u{k}"
        variant = abtest.assign(test.id, test.variants, user)
        abtest.outcome(test.id, user=user, success=rng.random() < truth[variant])
        if k in (100, 400, 700):
            verdicts.append(abtest.results(test.id, promote=False)["winner"])
    assert verdicts[:2] == [None, None]  # too few samples to call it
    early = abtest.results(test.id, promote=False)
    assert early["leader"] == "B" and early["winner"] == "B" and early["p_values"]["A"] < 0.05
    b = next(v for v in early["variants"] if v["name"] == "B")
    assert b["rate_ci95"][0] < b["rate"] < b["rate_ci95"][1] and abs(b["rate"] - 0.40) < 0.05
    assert b["prob_best"] > 0.95
    final = abtest.results(test.id)  # decides, and moves the alias
    assert final["status"] == "decided" and final["promoted"] == "lightdom@champion -> 2"
    with db.session() as s:
        assert store.resolve(s, "lightdom@champion").version == 2
        assert "A/B test" in store.alias_log(s, "lightdom")[-1]["reason"]


def test_no_difference_is_not_declared(two_versions, fixed_test_id):
    rng = random.Random(3)
    test = abtest.create("lightdom", [{"version": 1}, {"version": 2}], min_samples=200)
    for k in range(3000):
        abtest.outcome(test.id, user=f"u{k}", success=rng.random() < 0.35)
    res = abtest.results(test.id)
    assert res["winner"] is None and "no significant difference" in res["recommendation"]


@pytest.mark.parametrize("b_mean, winner", [(3.0, None), (3.4, "B")])
def test_ratings_are_decided_by_their_means_and_spread_not_by_sample_counts(two_versions, fixed_test_id, b_mean, winner):
    """Before, a rating test declared its leader the winner once every variant had min_samples; now
    equal means stay undecided however many outcomes arrive, and a real difference is found."""
    rng = random.Random(5)
    test = abtest.create("lightdom", [{"version": 1}, {"version": 2}], metric="rating", min_samples=100)
    for k in range(1200):
        variant = "AB"[k % 2]
        abtest.outcome(test.id, variant=variant, rating=rng.gauss(3.0 if variant == "A" else b_mean, 1.0))
    res = abtest.results(test.id, promote=False)
    assert res["winner"] == winner and res["test"] == "mSPRT (always valid)"
    b = next(v for v in res["variants"] if v["name"] == "B")
    assert abs(b["rating_mean"] - b_mean) < 0.1 and abs(b["rating_sd"] - 1.0) < 0.1
    assert set(res["p_values_one_look"]) == {"A" if res["leader"] == "B" else "B"}  # Welch's t, for reading


def test_latency_is_decided_for_the_faster_variant_from_gateway_sums(two_versions, fixed_test_id):
    rng = random.Random(9)
    test = abtest.create("lightdom", [{"version": 1}, {"version": 2}], metric="latency", min_samples=50)
    for variant, mean, sd in (("A", 150.0, 30.0), ("B", 120.0, 20.0)):
        ms = [max(1.0, rng.gauss(mean, sd)) for _ in range(200)]
        for chunk in range(0, 200, 50):  # a gateway flushes sums for many requests at once
            part = ms[chunk:chunk + 50]
            abtest.add_traffic(test.id, variant, requests=len(part), latency_ms=sum(part),
                               latency_ms_sq=sum(x * x for x in part))
    res = abtest.results(test.id, promote=False)
    assert res["winner"] == "B" and res["leader"] == "B"
    a = next(v for v in res["variants"] if v["name"] == "A")
    assert abs(a["latency_ms_mean"] - 150) < 6 and abs(a["latency_ms_sd"] - 30) < 5
    with pytest.raises(ValueError, match="latency_ms_sq"):
        abtest.add_traffic(test.id, "A", requests=2, latency_ms=10.0)


def test_stats_helpers():
    assert abtest.two_proportion_p(50, 100, 50, 100) == pytest.approx(1.0)
    assert abtest.two_proportion_p(60, 100, 40, 100) == pytest.approx(0.0047, abs=5e-4)  # z = 2.83
    lo, hi = abtest.wilson(30, 100)
    assert lo == pytest.approx(0.219, abs=1e-3) and hi == pytest.approx(0.396, abs=1e-3)
    assert abtest.prob_best([(10, 100), (90, 100)])[1] > 0.999


@pytest.mark.slow
def test_ab_test_and_deploy_endpoints(live_api, tmp_path):
    home = tmp_path / "home"
    for name in ("a", "b"):
        store.register(store.Registration("lightdom", fake_run(home, name)))
    db.dispose()
    api = live_api(worker=False)
    with api.client() as c:
        bad = c.post("/api/finetuning/phase3/ab-test", json={"model": "lightdom", "variants": [{"version": 1}]})
        assert bad.status_code == 422
        created = c.post("/api/finetuning/phase3/ab-test", json={
            "model": "lightdom", "variants": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}],
            "min_samples": 5})
        assert created.status_code == 201, created.text
        test_id = created.json()["id"]
        for k in range(40):
            r = c.post(f"/api/finetuning/phase3/ab-test/{test_id}/outcome", json={"user": f"u{k}", "success": k % 2 == 0})
            assert r.status_code == 200 and r.json()["variant"] in ("A", "B")
        got = c.get(f"/api/finetuning/phase3/ab-test/{test_id}").json()
        assert sum(v["outcomes"] for v in got["variants"]) == 40 and "recommendation" in got
        assert c.post(f"/api/finetuning/phase3/ab-test/{test_id}/outcome", json={"user": "x"}).status_code == 400
        assert c.get("/api/finetuning/phase3/ab-test/nope").status_code == 404

        dep = c.post("/api/finetuning/phase4/deploy", json={"model": "lightdom:1", "target": "prod"})
        assert dep.status_code == 202 and dep.json()["status"] == "pending"
        listed = c.get("/api/finetuning/phase4/deployments").json()["deployments"]
        assert listed[0]["ref"] == "lightdom:1" and listed[0]["events"][0]["kind"] == "requested"
        assert c.post(f"/api/finetuning/phase4/rollback/{dep.json()['id']}").status_code == 400  # not live yet
        assert c.post("/api/finetuning/phase4/rollback/999").status_code == 404
        assert c.post("/api/finetuning/phase4/deploy", json={"model": "lightdom:9"}).status_code == 404
