"""Deterministic, stratified train/validation split.

Each stratum (task type) gives the validation set its share of rows; shares are rounded by
largest remainder so the total is exactly round(n * ratio), at least 1 when there are 10 or
more rows. Within a stratum, rows are ranked by a seeded hash of their content, so the split
depends on the seed and the rows, not on the order of the input files.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict


def ranker(seed: int):
    """A row's seeded rank key (8 bytes of keyed blake2b of its digest), with the key made once."""
    key = seed.to_bytes(8, "little", signed=True)
    return lambda row_digest: hashlib.blake2b(row_digest, digest_size=8, key=key).digest()


def validation_rows(strata: list[str], digests: list[bytes], ratio: float, seed: int) -> set[int]:
    """Indices (into the kept rows) that go to validation."""
    n = len(strata)
    if not 0.0 <= ratio < 1.0:
        raise ValueError("validation ratio must be in [0, 1)")
    target = round(n * ratio)
    if ratio > 0 and n >= 10:
        target = max(target, 1)
    if target == 0:
        return set()
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        groups[s].append(i)
    quotas = {s: len(rows) * target / n for s, rows in groups.items()}
    take = {s: int(q) for s, q in quotas.items()}
    short = target - sum(take.values())
    # Largest remainder first; ties broken by stratum name for determinism.
    for s in sorted(quotas, key=lambda s: (-(quotas[s] - take[s]), s))[:short]:
        take[s] += 1
    chosen: set[int] = set()
    rank = ranker(seed)
    for s, rows in groups.items():
        if take[s]:
            ranked = sorted(rows, key=lambda i: rank(digests[i]))
            chosen.update(ranked[: take[s]])
    return chosen
