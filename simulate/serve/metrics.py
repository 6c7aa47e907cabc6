"""`dp serve`'s Prometheus metrics, on a registry of their own.

Counted per answered request: requests by HTTP status, tokens really generated,
traces started / pruned / finished, the estimated tokens pruning saved, judge
seconds and pairs, and the request latency. `GET /metrics` renders them in the
Prometheus text format. Nothing here serves HTTP or runs an engine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("dp_requests", "Chat-completion requests answered, by HTTP status", ["status"],
                                registry=r)
        self.in_flight = Gauge("dp_requests_in_flight", "Requests running on the engine now", registry=r)
        self.tokens = Counter("dp_tokens_generated", "Tokens generated over all traces", registry=r)
        self.pruned_tokens = Counter(
            "dp_tokens_pruned", "Estimated tokens not generated because traces were pruned: per pruned trace, "
            "the mean length of its request's finished traces minus what it had generated (at least 0)",
            registry=r)
        self.traces = Counter("dp_traces", "Traces by live decision", ["decision"], registry=r)
        self.judge_seconds = Counter("dp_judge_seconds", "Seconds spent in the judge", registry=r)
        self.judge_pairs = Counter("dp_judge_pairs", "Judge evaluations", registry=r)
        self.latency = Histogram("dp_request_latency_seconds", "Latency of answered requests (200)",
                                 buckets=LATENCY_BUCKETS, registry=r)

    def answered(self, info: dict, seconds: float) -> None:
        """Count one answered request from its `dp` field."""
        self.requests.labels(status="200").inc()
        self.tokens.inc(info["tokens_generated"])
        self.pruned_tokens.inc(info["tokens_saved_estimate"])
        self.traces.labels(decision="finish").inc(info["traces_finished"])
        self.traces.labels(decision="prune").inc(info["traces_pruned"])
        self.judge_seconds.inc(info["judge_seconds"])
        self.judge_pairs.inc(info["judge_pairs"])
        self.latency.observe(seconds)

    def failed(self, status: int) -> None:
        self.requests.labels(status=str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
