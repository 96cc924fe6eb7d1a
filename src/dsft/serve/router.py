"""Which loaded model answers a request.

A route is what clients put in `model`: a registered name (`lightdom`), a ref (`lightdom:2`,
`lightdom@champion`) or a serving target (`prod`). It has one or more variants with weights: one
for a plain deployment, two for a canary (the new version takes its percent), two or more for an
A/B test. Variants are picked by a stable hash of the user, so a user stays on one variant. The
gateway swaps whole route tables (one assignment), so a request sees either the old or the new
table, never half of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsft.registry.abtest import assign


@dataclass(frozen=True)
class Variant:
    name: str  # "live", "canary", or the A/B variant's name
    key: str  # the backend's name for the loaded model, e.g. "lightdom:2"
    weight: float = 1.0

    @property
    def version(self) -> str:
        return self.key.rsplit(":", 1)[-1] if ":" in self.key else self.key


@dataclass(frozen=True)
class Route:
    name: str
    variants: tuple[Variant, ...]
    salt: str = ""  # the A/B test id (or deployment id): part of the assignment hash
    ab_test: str | None = None

    def pick(self, user: str | None) -> Variant:
        if len(self.variants) == 1:
            return self.variants[0]
        chosen = assign(self.salt or self.name, [{"name": v.name, "weight": v.weight} for v in self.variants], user)
        return next(v for v in self.variants if v.name == chosen)


@dataclass
class Table:
    routes: dict[str, Route] = field(default_factory=dict)

    def with_route(self, route: Route, *aliases: str) -> Table:
        routes = dict(self.routes)
        for name in (route.name, *aliases):
            routes[name] = Route(name, route.variants, route.salt, route.ab_test)
        return Table(routes)

    def listing(self) -> list[tuple[str, list[str]]]:
        """(id, aliases) per distinct thing served: names that route to the same variants are one
        model, listed under its backend name (e.g. `full8`) with the others (`prod`, `runs/full8`) as
        its aliases; a canary or an A/B test is its own entry, under the route's name."""
        groups: dict[tuple, list[str]] = {}
        for name, r in self.routes.items():
            # the salt only tells split routes apart (one variant routes the same whatever its salt)
            groups.setdefault((r.variants, r.salt if len(r.variants) > 1 else ""), []).append(name)
        out = []
        for (variants, _), names in groups.items():
            keys = {v.key for v in variants}
            primary = next((n for n in sorted(names) if n in keys), sorted(names)[0])
            out.append((primary, sorted(n for n in names if n != primary)))
        return sorted(out)

    def keys(self) -> set[str]:
        return {v.key for r in self.routes.values() for v in r.variants}
