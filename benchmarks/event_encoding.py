"""Parcel events of a full tile: built and serialised column-wise against one object per event.

    python -m benchmarks.event_encoding [--rows 203320] [--kafka] [--bootstrap HOST:PORT]

The input is a full tile's observation table (`--rows` parcels of one Sentinel-2 acquisition,
float32 statistics as the zonal kernel writes them). Reported, in events per second:

* columns: `observation_events` (ids hashed in Rust) and `EventBatch.records()` (JSON built in
  Rust), what `Engine.process` and the worker do now;
* objects: the same events as `ParcelEvent` objects, each `to_json()`-ed (the per-event path);
  the two outputs are checked byte-identical;
* with `--kafka` (a local broker unless `--bootstrap`): the records sent in one transaction as
  the worker does (`monitor.worker.send_events`, offsets committed with them), and the plain
  kafka-python `send` loop with one flush, on the same records.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from monitor.events import OBSERVATION_STATS, EventBatch, observation_events

T = TypeVar("T")

ACQUIRED = datetime(2025, 6, 1, 10, 56, 19, 24000, tzinfo=UTC)
CLOCK = datetime(2025, 6, 1, 11, 2, tzinfo=UTC)


def tile_table(rows: int, seed: int = 0) -> pl.DataFrame:
    """A full tile's observation rows: one Sentinel-2 product, float32 band statistics."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(20, 4000, rows)
    valid = (pixels * rng.random(rows)).astype(np.int64)
    stats = {
        name: pl.Series(name, rng.random(rows, dtype=np.float32))
        for name in OBSERVATION_STATS
        if name.startswith(("B", "NDVI"))
    }
    cloudy = rng.random(rows) < 0.1  # parcels with no clear pixel: NaN statistics
    stats = {k: v.scatter(np.flatnonzero(cloudy), float("nan")) for k, v in stats.items()}
    return pl.DataFrame(
        {
            "parcel_id": [f"31UFS{i:07d}" for i in range(rows)],
            "acquired": [ACQUIRED] * rows,
            "sensor": "S2",
            "product_id": "S2B_MSIL2A_20250601T105619_N0511_R094_T31UFS",
            "tile": "31UFS",
            "pixel_count": pixels,
            "valid_count": valid,
            "valid_fraction": valid / pixels,
            "source": "observed",
            **stats,
        }
    ).with_columns(pl.col("acquired").dt.cast_time_unit("us"))


def timed(label: str, n: int, work: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = work()
    seconds = time.perf_counter() - start
    print(f"{label:<52} {seconds:7.3f} s  {n / seconds:12,.0f} events/s")
    return out, seconds


def total(n: int, label: str, seconds: float) -> None:
    print(f"{label:<52} {seconds:7.3f} s  {n / seconds:12,.0f} events/s")


def observe(table: pl.DataFrame) -> EventBatch:
    return observation_events(table, CLOCK)


def kafka_rates(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from monitor.broker import create_topics
    from monitor.worker import EVENT_PRODUCER_SETTINGS, send_events

    topic = f"bench-events-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {topic: 6})
    settings = {"bootstrap_servers": bootstrap, "acks": "all", **EVENT_PRODUCER_SETTINGS}
    producer = KafkaProducer(transactional_id=f"bench-{uuid.uuid4().hex[:8]}", **settings)
    producer.init_transactions()
    producer.partitions_for(topic)

    def one_transaction() -> None:
        producer.begin_transaction()
        send_events(producer, topic, records)
        offsets = {TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)}
        producer.send_offsets_to_transaction(offsets, f"bench-{uuid.uuid4().hex[:8]}")
        producer.commit_transaction()

    _, txn = timed("Kafka: one transaction (worker's send_events)", len(records), one_transaction)
    producer.close()
    plain = KafkaProducer(**settings)
    plain.partitions_for(topic)

    def loop() -> None:
        for key, value in records:
            plain.send(topic, key=key, value=value)
        plain.flush()

    _, loop_s = timed("Kafka: plain kafka-python send loop + flush", len(records), loop)
    plain.close()
    print(f"one transaction / plain loop: {loop_s / txn:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=203_320)
    parser.add_argument("--kafka", action="store_true", help="also send to a local broker")
    parser.add_argument("--bootstrap", help="an existing broker (implies --kafka)")
    args = parser.parse_args()
    table = tile_table(args.rows)
    n = table.height
    print(f"{n} observation rows of one full-tile acquisition")
    batch, build = timed("columns: observation_events (ids)", n, partial(observe, table))
    records, encode = timed("columns: EventBatch.records() (JSON)", n, batch.records)
    total(n, "columns: built + serialised", build + encode)
    fresh = observe(table)
    objects, build_o = timed("objects: ParcelEvent per event", n, fresh.events)
    old, encode_o = timed(
        "objects: (parcel_id.encode(), to_json()) per event",
        n,
        lambda: [(e.parcel_id.encode(), e.to_json()) for e in objects],
    )
    total(n, "objects: built + serialised", build_o + encode_o)
    speedup = (build_o + encode_o) / (build + encode)
    print(f"columns vs objects: {speedup:.1f}x faster; byte-identical: {old == records}")
    if args.kafka or args.bootstrap:
        from monitor.broker import start_broker, stop_broker

        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "kafka"
            bootstrap = args.bootstrap or start_broker(data, 0).bootstrap
            try:
                kafka_rates(bootstrap, records)
            finally:
                if args.bootstrap is None:
                    stop_broker(data)


if __name__ == "__main__":
    main()
