"""Prometheus metrics of the streaming worker.

Each worker owns a `CollectorRegistry` (several workers in one process, as in tests, do not
collide); `serve` exposes it over HTTP, on 127.0.0.1 unless told otherwise. Counters move when a
transaction commits, so they count what consumers of `parcel-events` can see.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from monitor.errors import ConfigError

# Per-acquisition stages take milliseconds on small grids and up to a minute on a full tile.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class WorkerMetrics:
    """The worker's counters, histogram and gauges, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.acquisitions = Counter(
            "parcel_monitor_acquisitions_processed",
            "Acquisitions processed and committed",
            ["sensor"],
            registry=r,
        )
        self.dead_letters = Counter(
            "parcel_monitor_acquisitions_dead_lettered",
            "Acquisition messages sent to the dead-letter topic, by error class",
            ["error"],
            registry=r,
        )
        self.duplicates = Counter(
            "parcel_monitor_acquisitions_duplicate",
            "Acquisition messages skipped: their product's events were committed already",
            registry=r,
        )
        self.parcels = Counter(
            "parcel_monitor_parcels_observed", "Parcel observations committed", registry=r
        )
        self.events = Counter(
            "parcel_monitor_events", "Parcel events committed", ["type"], registry=r
        )
        self.stage_seconds = Histogram(
            "parcel_monitor_stage_seconds",
            "Seconds per acquisition and stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.transactions = Counter(
            "parcel_monitor_transactions", "Kafka transactions by outcome", ["outcome"], registry=r
        )
        self.retries = Counter(
            "parcel_monitor_retries",
            "Batches retried after an infrastructure error or a bug",
            registry=r,
        )
        self.lag = Gauge(
            "parcel_monitor_consumer_lag",
            "Messages behind the partition's end, as of the last committed batch",
            ["topic", "partition"],
            registry=r,
        )


def serve(metrics: WorkerMetrics, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve `/metrics` on `addr:port` (0 picks a free port); returns the server to shut down."""
    try:
        server, _ = start_http_server(port, addr=addr, registry=metrics.registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}") from exc
    return server
