"""Prometheus metrics, one registry per running bridge (so tests can run several in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.sources.ratelimit import RateBudget

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    """Every series bridge exports. Stages record into it; `/metrics` renders it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("bridge_polls", "Polls per source", ["source"], registry=r)
        self.poll_errors = Counter(
            "bridge_poll_errors", "Failed polls per source", ["source"], registry=r
        )
        self.poll_latency = Histogram(
            "bridge_poll_latency_seconds", "Poll latency per source", ["source"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.source_up = Gauge("bridge_source_up", "1 if the source's last poll worked",
                               ["source"], registry=r)
        self.tracked_jobs = Gauge("bridge_tracked_jobs", "Jobs tracked per source", ["source"],
                                  registry=r)
        self.events = Counter("bridge_events", "Events detected per kind and source",
                              ["on", "source"], registry=r)
        self.rule_matches = Counter("bridge_rule_matches", "Notifications produced per rule",
                                    ["rule"], registry=r)
        self.silenced = Counter("bridge_silenced", "Notifications muted by a silence or a "
                                "maintenance window, per rule and sink", ["rule", "sink"],
                                registry=r)
        self.render_errors = Counter("bridge_render_errors", "Template failures per rule",
                                     ["rule"], registry=r)
        self.deliveries = Counter("bridge_deliveries", "Successful deliveries per sink",
                                  ["sink"], registry=r)
        self.delivery_failures = Counter(
            "bridge_delivery_failures", "Failed delivery attempts per sink", ["sink"], registry=r
        )
        self.dead_letters = Counter("bridge_dead_letters", "Deliveries dead-lettered per sink",
                                    ["sink"], registry=r)
        self.delivery_latency = Histogram(
            "bridge_delivery_latency_seconds", "From event to successful delivery, per sink",
            ["sink"], buckets=_DELIVERY_BUCKETS, registry=r,
        )
        self.source_owner = Gauge(
            "bridge_source_owner", "1 for the instance that holds a source's poll lease",
            ["source", "instance"], registry=r,
        )
        self.lease_takeovers = Counter(
            "bridge_lease_takeovers",
            "Leases this instance took over from another whose lease had expired",
            ["lease"], registry=r,
        )
        self.stale_commits = Counter(
            "bridge_stale_commits",
            "Polls and pushes whose commit was refused (another instance changed the state)",
            ["source"], registry=r,
        )
        self.outbox_depth = Gauge("bridge_outbox_pending", "Deliveries waiting in the outbox",
                                  registry=r)
        self.outbox_dead = Gauge("bridge_outbox_dead", "Dead-lettered deliveries", registry=r)
        self.outbox_superseded = Gauge(
            "bridge_outbox_superseded",
            "Deliveries a newer one of the same Slack message took the place of while they "
            "waited (counted as delivered; kept as long as delivered rows)", registry=r)
        self.outbox_oldest = Gauge(
            "bridge_outbox_oldest_pending_age_seconds", "Age of the oldest pending delivery",
            registry=r,
        )

    def declare(self, polled_sources: Iterable[str], sinks: Iterable[str]) -> None:
        """Start every per-source and per-sink series at zero, so a scrape shows
        `bridge_poll_errors_total{source="x"} 0` before the first failure (a rate() or an
        alert over a series that does not exist yet sees nothing)."""
        for source in polled_sources:
            self.polls.labels(source)
            self.poll_errors.labels(source)
            self.poll_latency.labels(source)
        for sink in sinks:
            self.deliveries.labels(sink)
            self.delivery_failures.labels(sink)
            self.dead_letters.labels(sink)
            self.delivery_latency.labels(sink)

    def watch_budgets(self, budgets: Callable[[], Mapping[str, RateBudget]]) -> None:
        """Export each source's rate-limit budget, read from the sources at scrape time."""
        self.registry.register(_BudgetCollector(budgets))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _BudgetCollector(Collector):
    """`bridge_source_rate_limit_remaining` (and `_limit`): what each API last announced
    (absent until it announced something); `bridge_source_rate_limited_total`: its 429s."""

    def __init__(self, budgets: Callable[[], Mapping[str, RateBudget]]) -> None:
        self._budgets = budgets

    def collect(self) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "bridge_source_rate_limit_remaining",
            "Requests the source's API last said are left in its rate-limit window",
            labels=["source"])
        limit = GaugeMetricFamily(
            "bridge_source_rate_limit_limit",
            "Requests the source's API allows per rate-limit window, as it last said",
            labels=["source"])
        refused = CounterMetricFamily(
            "bridge_source_rate_limited", "HTTP 429 answers per source", labels=["source"])
        for name, budget in sorted(self._budgets().items()):
            if budget.remaining is not None:
                remaining.add_metric([name], budget.remaining)
            if budget.limit is not None:
                limit.add_metric([name], budget.limit)
            refused.add_metric([name], budget.rate_limited)
        yield remaining
        yield limit
        yield refused
