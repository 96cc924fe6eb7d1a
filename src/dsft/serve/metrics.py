"""Prometheus metrics of one gateway, labelled by model version and A/B variant."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LABELS = ("route", "version", "variant")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dsft_requests", "Chat completion requests", (*LABELS, "status"),
                                registry=self.registry)
        self.latency = Histogram("dsft_request_seconds", "Request latency (to the last byte)", LABELS,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.tokens = Counter("dsft_tokens", "Tokens in prompts (in) and completions (out)", (*LABELS, "direction"),
                              registry=self.registry)

    def observe(self, route: str, version: str, variant: str, status: str, seconds: float,
                tokens_in: int = 0, tokens_out: int = 0) -> None:
        self.requests.labels(route, version, variant, status).inc()
        self.latency.labels(route, version, variant).observe(seconds)
        if tokens_in:
            self.tokens.labels(route, version, variant, "in").inc(tokens_in)
        if tokens_out:
            self.tokens.labels(route, version, variant, "out").inc(tokens_out)

    def render(self) -> bytes:
        return generate_latest(self.registry)
