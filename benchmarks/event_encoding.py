"""Parcel events of a full tile: built and serialised column-wise against one object per event.

    python -m benchmarks.event_encoding [--rows 203320] [--kafka] [--bootstrap HOST:PORT]

The input is a full tile's observation table (`--rows` parcels of one Sentinel-2 acquisition,
float32 statistics as the zonal kernel writes them). Reported, in events per second:

* columns: `observation_events` (ids hashed in Rust) and `EventBatch.records()` (JSON built in
  Rust), what `Engine.process` and the worker do now;
* objects: the same events as `ParcelEvent` objects, each `to_json()`-ed (the per-event path);
  the two outputs are checked byte-identical;
* with `--kafka` (a local broker unless `--bootstrap`), on the same records: one transaction
  as the worker sends it (`monitor.event_sender.send_events`: whole record batches encoded in
  Rust, offsets committed with them), one transaction of the former per-record path (one
  `send` per event, partitions hashed at once), and the plain kafka-python `send` loop with one
  flush; then the ratios of the record-batch path to the other two. Each Kafka line also gives
  this process's CPU per event (all threads: the producer's sender included), as the broker
  shares the machine's cores. A small transaction first warms the new topic up.
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
from typing import Any, TypeVar

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


def timed_cpu(label: str, n: int, work: Callable[[], None]) -> float:
    """Like `timed`, plus this process's CPU (all threads, the producer's sender included)."""
    start, cpu = time.perf_counter(), time.process_time()
    work()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"{label:<52} {seconds:7.3f} s  {n / seconds:12,.0f} events/s  "
        f"{cpu / n * 1e6:5.1f} CPU us/event"
    )
    return seconds


def total(n: int, label: str, seconds: float) -> None:
    print(f"{label:<52} {seconds:7.3f} s  {n / seconds:12,.0f} events/s")


def observe(table: pl.DataFrame) -> EventBatch:
    return observation_events(table, CLOCK)


def per_record_send(producer: Any, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """The worker's send path before record batches: keys hashed at once, one `send` each."""
    from monitor.event_sender import key_partitions

    partitions = sorted(producer.partitions_for(topic))
    chosen = key_partitions([key for key, _ in records], len(partitions))
    for (key, value), index in zip(records, chosen.tolist(), strict=True):
        producer.send(topic, key=key, value=value, partition=partitions[index])


def kafka_rates(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from monitor.broker import create_topics
    from monitor.event_sender import send_events
    from monitor.worker import EVENT_PRODUCER_SETTINGS

    topic = f"bench-events-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {topic: 6})
    settings = {"bootstrap_servers": bootstrap, "acks": "all", **EVENT_PRODUCER_SETTINGS}
    n = len(records)

    def transaction(
        send: Callable[[Any, str, list[tuple[bytes, bytes]]], None],
        part: list[tuple[bytes, bytes]],
        label: str | None,
    ) -> float:
        producer = KafkaProducer(transactional_id=f"bench-{uuid.uuid4().hex[:8]}", **settings)
        producer.init_transactions()
        producer.partitions_for(topic)

        def one_transaction() -> None:
            producer.begin_transaction()
            send(producer, topic, part)
            offsets = {TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)}
            producer.send_offsets_to_transaction(offsets, f"bench-{uuid.uuid4().hex[:8]}")
            producer.commit_transaction()

        if label is None:
            one_transaction()
            seconds = 0.0
        else:
            seconds = timed_cpu(label, len(part), one_transaction)
        producer.close()
        return seconds

    # A new topic's first writes warm the broker up (log segments, JIT): not any path's cost.
    transaction(send_events, records[: max(1, n // 10)], None)
    batches = transaction(send_events, records, "Kafka: one transaction, send_events (batches)")
    per_record = transaction(per_record_send, records, "Kafka: one transaction, per-record send")
    plain = KafkaProducer(**settings)
    plain.partitions_for(topic)

    def loop() -> None:
        for key, value in records:
            plain.send(topic, key=key, value=value)
        plain.flush()

    loop_s = timed_cpu("Kafka: plain kafka-python send loop + flush", n, loop)
    plain.close()
    print(
        f"record batches vs per-record send: {per_record / batches:.2f}x; "
        f"vs plain loop: {loop_s / batches:.2f}x"
    )


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
