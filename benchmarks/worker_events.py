"""Events to Kafka: the worker's transactional path against a plain kafka-python producer loop.

    python -m benchmarks.worker_events [--bootstrap HOST:PORT] [--events 200000] [--copies 10]

Starts a local broker unless `--bootstrap` is given. The events are the real ones of the Mol
sample (22 acquisitions x 42 parcels), repeated to `--events`. Reported, in events per second:

* plain: `KafkaProducer(acks="all")` with the worker's batching, `send(topic, key, value)` in
  a loop, one flush: the plain kafka-python producer loop;
* transactional: the same producer with a `transactional_id`, sending as the worker does
  (`monitor.event_sender.send_events`: whole record batches encoded in Rust), one transaction per
  full-tile acquisition (all events), per 32 or per 1 sample acquisitions (42 events each),
  offsets added to each transaction as the worker does;
* worker: `Worker.run` end to end on the sample published `--copies` times, each copy with
  its own product ids (the worker skips a product already processed), so every message is
  real work (read, zonal statistics, store, events, commit); with the seconds per acquisition
  and, of those, the Kafka send stage's (events and ledger record handed to the producer).

Rates are wall-clock; the CPU seconds per event of this process (all threads) are printed too,
as the broker and other work share the machine's cores.

Measured with `--events 100000 --copies 5` (2 shared cores, broker on them, load ~11):
plain 14 500 events/s (22.3 CPU us/event), transactional 160 700 (one full-tile transaction in
record batches, 1.2 CPU us/event), 11 200 (32 sample acquisitions/txn: 7 events per partition
go through `send`), 1 400 (1/txn); the worker 32.3 ms per sample acquisition, 2.3 ms of it the
send. Before record batches (per-record `send`, load ~2): plain 28 600, full-tile transaction
31 600 (18.4 CPU us/event), 32/txn 15 200, 1/txn 1 900.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from monitor.broker import create_topics, start_broker, stop_broker
from monitor.parcels import load_parcels
from monitor.pipeline import Engine, EngineConfig
from monitor.stac import read_item
from monitor.store import ObservationStore
from monitor.worker import EVENT_PRODUCER_SETTINGS, Worker, WorkerConfig, href_policy, send_events

SAMPLE = Path(__file__).parents[1] / "examples" / "mol-2023"
PRODUCER = {"acks": "all", **EVENT_PRODUCER_SETTINGS}


def _absolute(path: Path, copy: int | None = None) -> bytes:
    """The item with absolute hrefs; with `copy`, a product of its own (`ID-c<copy>`)."""
    item = json.loads(path.read_text())
    for asset in item["assets"].values():
        asset["href"] = str((path.parent / asset["href"]).resolve())
    if copy is not None:
        item["id"] = f"{item['id']}-c{copy}"
    return json.dumps(item).encode()


def sample_events(store: Path) -> list[list[tuple[bytes, bytes]]]:
    """The sample's events as (key, value) pairs, one list per acquisition."""
    parcels = load_parcels(SAMPLE / "segments.gpkg", id_column="segment_id")
    engine = Engine(EngineConfig(parcels, ObservationStore(store), href_policy=href_policy([])))
    out = []
    for path in sorted(SAMPLE.glob("s[12]/*/item.json")):
        result = engine.process(engine.parse(_absolute(path), None))
        out.append([(e.parcel_id.encode(), e.to_json()) for e in result.events])
    return out


Rate = tuple[float, float]  # events per wall second, CPU microseconds per event


def plain(bootstrap: str, topic: str, acquisitions: list[list[tuple[bytes, bytes]]]) -> Rate:
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    producer.partitions_for(topic)  # metadata before the clock starts, as in the others
    n = sum(len(a) for a in acquisitions)
    start, cpu = time.perf_counter(), time.process_time()
    for events in acquisitions:
        for key, value in events:
            producer.send(topic, key=key, value=value)
    producer.flush()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    producer.close()
    return n / seconds, cpu / n * 1e6


def transactional(
    bootstrap: str, topic: str, acquisitions: list[list[tuple[bytes, bytes]]], per_txn: int
) -> Rate:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"bench-{uuid.uuid4().hex[:8]}", **PRODUCER
    )
    producer.init_transactions()
    group, source = f"bench-{uuid.uuid4().hex[:8]}", TopicPartition(topic, 0)
    producer.partitions_for(topic)
    n = sum(len(a) for a in acquisitions)
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(acquisitions), per_txn):
        producer.begin_transaction()
        for events in acquisitions[first : first + per_txn]:
            send_events(producer, topic, events)
        offsets = {source: OffsetAndMetadata(first + per_txn, "", -1)}
        producer.send_offsets_to_transaction(offsets, group)
        producer.commit_transaction()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    producer.close()
    return n / seconds, cpu / n * 1e6


def worker(bootstrap: str, copies: int, store: Path) -> tuple[float, float, float, int]:
    """Committed events/s (from partition assignment to the last commit) of `Worker.run` on
    the sample x `copies`, its seconds per acquisition from parse to send, and of the send."""
    suffix = uuid.uuid4().hex[:8]
    source, events, dlq, done = (f"{t}-{suffix}" for t in ("acq", "events", "dlq", "done"))
    create_topics(bootstrap, {source: 6, events: 6, dlq: 1, done: 1})
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    items = sorted(SAMPLE.glob("s[12]/*/item.json"))
    for copy in range(copies):
        for path in items:
            producer.send(source, key=read_item(path).tile.encode(), value=_absolute(path, copy))
    producer.flush()
    producer.close()
    parcels = load_parcels(SAMPLE / "segments.gpkg", id_column="segment_id")
    engine = Engine(EngineConfig(parcels, ObservationStore(store), href_policy=href_policy([])))
    config = WorkerConfig(
        bootstrap, group_id=f"g-{suffix}", worker_name=f"bench-{suffix}", source_topic=source,
        events_topic=events, dlq_topic=dlq, ledger_topic=done, exit_when_idle=2.0,
    )  # fmt: skip
    run = Worker(engine, config)
    thread = threading.Thread(target=run.run)
    thread.start()
    total = copies * len(items)
    while run._assigned_at is None:  # the group join is not the worker's throughput
        time.sleep(0.005)
    start = time.perf_counter()
    while run.summary.acquisitions < total and thread.is_alive():
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    thread.join()
    samples: Any = run.metrics.registry.get_sample_value
    busy = sum(
        samples("parcel_monitor_stage_seconds_sum", {"stage": stage}) or 0.0
        for stage in ("parse", "labels", "zonal", "store", "events", "send")
    )
    n = run.summary.acquisitions
    if n != total or run.summary.duplicates:
        raise SystemExit(f"worker: {n} of {total} acquisitions, {run.summary.duplicates} skipped")
    send = samples("parcel_monitor_stage_seconds_sum", {"stage": "send"}) or 0.0
    return run.summary.events / seconds, busy / n, send / n, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bootstrap, data = args.bootstrap, Path(tmp) / "kafka"
        if bootstrap is None:
            bootstrap = start_broker(data, 0).bootstrap
        try:
            sample = sample_events(Path(tmp) / "store")
            per_acq = len(sample[0])
            acquisitions = (sample * (args.events // (per_acq * len(sample)) + 1))[
                : args.events // per_acq
            ]
            n = sum(len(a) for a in acquisitions)
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            create_topics(bootstrap, {topic: 6})
            print(f"{n} events of {len(acquisitions)} acquisitions ({per_acq} parcels each)")
            rate_plain, cpu = plain(bootstrap, topic, acquisitions)
            print(
                f"plain producer loop:                   {rate_plain:10.0f} events/s "
                f"({cpu:.1f} CPU us/event)"
            )
            full_tile = [[event for events in acquisitions for event in events]]
            cases = [("all events in 1 txn (a full tile)", full_tile, 1)]
            cases += [(f"{k:2d} acquisitions/txn", acquisitions, k) for k in (32, 1)]
            for label, batches, per_txn in cases:
                rate, cpu = transactional(bootstrap, topic, batches, per_txn)
                print(
                    f"transactional, {label}: {rate:10.0f} events/s "
                    f"({rate / rate_plain:.2f}x plain, {cpu:.1f} CPU us/event)"
                )
            store2 = Path(tmp) / "store2"
            rate, per_acquisition, send, done = worker(bootstrap, args.copies, store2)
            print(
                f"worker end to end: {done} acquisitions, {per_acquisition * 1000:.1f} ms per "
                f"acquisition (parse to send; the send {send * 1000:.2f} ms), "
                f"{rate:.0f} committed events/s"
            )
        finally:
            if args.bootstrap is None:
                stop_broker(data)


if __name__ == "__main__":
    main()
