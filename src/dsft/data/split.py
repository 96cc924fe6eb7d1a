"""Deterministic, stratified train/validation split.

Each stratum (task type) gives the validation set its share of rows; shares are rounded by
largest remainder so the total is exactly round(n * ratio), at least 1 when there are 10 or
more rows. Within a stratum, rows are ranked by a seeded hash of their content and the
lowest ranks go to validation, so the split depends on the seed and the rows, not on the order
of the input files.

`validation_rows` decides it for rows held in memory. `StreamingSplit` reaches the same
decision for rows that stream past and are written at once (`dsft data prepare`): only rows
whose rank is low enough that they might still be chosen become *candidates*, held aside
until the counts are known. The candidate bound shrinks as a stratum grows but stays well
above where its cut can land (six standard deviations of the binomial, plus slack for small
strata), so about ratio + 1% of a large dataset is held aside instead of all of it, and the
final choice among candidates is the exact one. Should a cut ever fall beyond the bound, the
caller is told (`complete` is False) and re-splits from every row's rank.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable

_SCALE = 1 << 64  # ranks are 8-byte big-endian integers


def _seed_key(seed: int) -> bytes:
    return seed.to_bytes(8, "little", signed=True)


def ranker(seed: int):
    """A row's seeded rank key (8 bytes of keyed blake2b of its digest), with the key made once."""
    key = _seed_key(seed)
    return lambda row_digest: hashlib.blake2b(row_digest, digest_size=8, key=key).digest()


def quotas(counts: dict[str, int], ratio: float) -> dict[str, int]:
    """Validation rows per stratum: its share of round(n * ratio), by largest remainder."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError("validation ratio must be in [0, 1)")
    n = sum(counts.values())
    target = round(n * ratio)
    if ratio > 0 and n >= 10:
        target = max(target, 1)
    if target == 0:
        return {s: 0 for s in counts}
    shares = {s: k * target / n for s, k in counts.items()}
    take = {s: int(q) for s, q in shares.items()}
    short = target - sum(take.values())
    # Largest remainder first; ties broken by stratum name for determinism.
    for s in sorted(shares, key=lambda s: (-(shares[s] - take[s]), s))[:short]:
        take[s] += 1
    return take


def lowest(strata: Iterable[str], ranks: list[bytes], take: dict[str, int],
           indices: list[int] | None = None) -> set[int]:
    """Per stratum, the `take[s]` rows of lowest rank: their indices (or `indices[k]` when given)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for k, s in enumerate(strata):
        groups[s].append(k)
    chosen: set[int] = set()
    for s, rows in groups.items():
        if take.get(s):
            rows.sort(key=ranks.__getitem__)
            chosen.update(rows[: take[s]] if indices is None else (indices[k] for k in rows[: take[s]]))
    return chosen


def validation_rows(strata: list[str], digests: list[bytes], ratio: float, seed: int) -> set[int]:
    """Indices (into the rows) that go to validation."""
    rank = ranker(seed)
    return lowest(strata, [rank(d) for d in digests], quotas(Counter(strata), ratio))


class StreamingSplit:
    """The split of `validation_rows`, decided while rows are written: see the module's docstring.

    `offer` each kept row in order; it says whether the row is a candidate (hold it aside) or
    certainly a training row (write it now). Memory per row is its 8-byte rank and its stratum's
    number; candidates also keep their position.
    """

    def __init__(self, ratio: float, seed: int, sigmas: float = 6.0, slack: float = 4.0):
        quotas({}, ratio)  # the same check of the ratio
        self.ratio, self.sigmas, self.slack = ratio, sigmas, slack
        self._key = _seed_key(seed)  # ranker(seed)'s hash, inlined in offer
        self.names: list[str] = []  # stratum number -> name
        self._state: dict[str, list] = {}  # name -> [number, rows so far, candidate limit, when to lower it]
        self.strata = array("I")  # per row: its stratum's number
        self.ranks = bytearray()  # per row: its 8-byte rank
        self.candidates: list[int] = []  # rows held aside, in order

    @property
    def counts(self) -> list[int]:
        """Rows per stratum number."""
        return [self._state[name][1] for name in self.names]

    def bound(self, n: int) -> int:
        """Ranks below this may still be among a stratum's lowest once it has n or more rows."""
        r = self.ratio
        if r == 0:
            return 0
        return min(_SCALE, int((r + self.sigmas * math.sqrt(r * (1 - r) / n) + self.slack / n) * _SCALE))

    def _limit(self, n: int) -> bytes:
        b = self.bound(n)
        return b.to_bytes(8, "big") if b < _SCALE else b"\xff" * 9  # longer than any rank: above them all

    def offer(self, stratum: str, row_digest: bytes) -> bool:
        st = self._state.get(stratum)
        if st is None:
            st = self._state[stratum] = [len(self.names), 0, b"", 0]
            self.names.append(stratum)
        n = st[1] = st[1] + 1
        if n >= st[3]:  # the limit is lowered in steps: a limit made for n rows is safe for more rows
            st[2], st[3] = self._limit(n), n + 8 + (n >> 6)
        rank = hashlib.blake2b(row_digest, digest_size=8, key=self._key).digest()
        self.strata.append(st[0])
        self.ranks += rank
        if rank < st[2]:  # as big-endian numbers
            self.candidates.append(len(self.strata) - 1)
            return True
        return False

    def rank(self, row: int) -> bytes:
        return bytes(self.ranks[8 * row: 8 * row + 8])

    def choose(self) -> tuple[set[int], bool]:
        """(validation rows, complete): complete is False when some stratum's cut fell beyond the
        candidates, and then the rows are chosen among all rows, as `validation_rows` would."""
        counts = self.counts
        take = quotas(dict(zip(self.names, counts)), self.ratio)
        cands = self.candidates
        final = [self.bound(n) for n in counts]
        sure = Counter()  # per stratum: candidates below the bound at the stratum's final size
        for i in cands:
            sid = self.strata[i]
            if int.from_bytes(self.ranks[8 * i: 8 * i + 8], "big") < final[sid]:
                sure[sid] += 1
        complete = all(sure[sid] >= take[name] for sid, name in enumerate(self.names))
        rows = cands if complete else range(len(self.strata))
        chosen = lowest((self.names[self.strata[i]] for i in rows), [self.rank(i) for i in rows], take, list(rows))
        return chosen, complete
