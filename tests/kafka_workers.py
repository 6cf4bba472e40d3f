"""Running workers against a real broker in tests: topics, publishing, reading back, checking.

Shared by `test_worker.py` and `test_faults.py`. Exactly-once is checked in a way that stays
true when inference stages add events of other types: every event id once, and per product
exactly one observation event per parcel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from monitor.broker import create_topics
from monitor.stac import read_item
from monitor.store import ObservationStore
from tests.sample_data import sample_dir, sample_path

PARCELS = sample_path("mol-2023", "segments.gpkg")
ITEMS = sorted(sample_path("mol-2023").glob("s[12]/*/item.json"))
N_PARCELS = 42
CLI = [sys.executable, "-m", "monitor.cli"]
# A dead worker's partitions move on once its session expires: the broker's minimum, for speed.
FAST_SESSION = "session_timeout_ms=6000\nheartbeat_interval_ms=1000\n"
#: Tiles of the copies of the sample season (`season_messages`): real MGRS ids, one stream each.
COPY_TILES = ("31UFS", "31UFT", "31UGS", "31UGT")


@dataclass(frozen=True)
class Topics:
    source: str
    events: str
    dlq: str
    ledger: str


def new_topics(bootstrap: str, partitions: int = 3, replication: int = 1) -> Topics:
    """Fresh topics of one test (its own names: tests do not see each other's data)."""
    suffix = uuid.uuid4().hex[:8]
    names = Topics(f"acq-{suffix}", f"events-{suffix}", f"dlq-{suffix}", f"done-{suffix}")
    create_topics(
        bootstrap,
        {names.source: partitions, names.events: partitions, names.dlq: 1, names.ledger: 1},
        replication,
    )
    return names


def absolute_item(path: Path, **hrefs: str) -> dict[str, Any]:
    """The item at `path` with absolute asset hrefs (a Kafka message has no folder)."""
    item: dict[str, Any] = json.loads(path.read_text())
    for key, asset in item["assets"].items():
        asset["href"] = hrefs.get(key, str((path.parent / asset["href"]).resolve()))
    return item


def item_message(path: Path) -> tuple[bytes, bytes]:
    """Key = MGRS tile, value = the item with absolute hrefs."""
    return read_item(path).tile.encode(), json.dumps(absolute_item(path)).encode()


def season_messages(copies: int) -> list[tuple[bytes, bytes]]:
    """`copies` tile streams of the sample season, each on its own tile with its own product
    ids (`ID-c<k>`): a longer backlog of distinct acquisitions, spread over partitions. Each
    stream in acquisition order, as `parcel-monitor publish` sends a catalog."""
    messages = []
    in_time_order = sorted(ITEMS, key=lambda path: read_item(path).acquired)
    for copy, tile in zip(range(copies), COPY_TILES, strict=False):
        for path in in_time_order:
            item = absolute_item(path)
            item["id"] = f"{item['id']}-c{copy}"
            props = item["properties"]
            props["grid:code"] = f"MGRS-{tile}"
            if "s2:mgrs_tile" in props:
                props["s2:mgrs_tile"] = tile
            messages.append((tile.encode(), json.dumps(item).encode()))
    return messages


def product_ids(messages: Sequence[tuple[bytes | None, bytes]]) -> set[str]:
    return {json.loads(value)["id"] for _, value in messages}


def publish(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consumer(bootstrap: str, topic: str, isolation: str) -> tuple[Any, list[TopicPartition]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"topic {topic} has no partitions"
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return consumer, tps


def end(bootstrap: str, topic: str, isolation: str) -> int:
    """Sum of the partition ends: the last stable offsets under read_committed."""
    consumer, tps = _consumer(bootstrap, topic, isolation)
    try:
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def read(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every record of `topic` up to its current end (the last stable offset if committed)."""
    consumer, tps = _consumer(bootstrap, topic, isolation)
    try:
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@dataclass(frozen=True)
class EventCheck:
    """What `check_events` found: the figures of a fault test's report line."""

    events: int
    observations: int
    duplicates: int
    products: int


def check_events(records: Sequence[Any], products: set[str]) -> EventCheck:
    """Every event id once, keyed by its parcel id; per product of `products` exactly one
    observation event per parcel, and no observation of any other product."""
    events = [json.loads(r.value) for r in records]
    ids = Counter(e["event_id"] for e in events)
    duplicates = sum(n - 1 for n in ids.values())
    assert duplicates == 0, f"{duplicates} duplicate events"
    assert all(r.key == e["parcel_id"].encode() for r, e in zip(records, events, strict=True))
    observations = [e for e in events if e["type"] == "observation"]
    per_product = Counter(e["evidence"]["product_ids"][0] for e in observations)
    assert per_product == dict.fromkeys(products, N_PARCELS)
    assert len({(e["parcel_id"], e["evidence"]["product_ids"][0]) for e in observations}) == len(
        observations
    )
    return EventCheck(len(events), len(observations), duplicates, len(per_product))


def observation_products(records: Sequence[Any]) -> set[str]:
    """The products with committed observation events."""
    values = (json.loads(r.value) for r in records)
    return {e["evidence"]["product_ids"][0] for e in values if e["type"] == "observation"}


def stored_products(store: Path) -> list[str]:
    return sorted(p.product_id for p in ObservationStore(store).products())


def check_store(store: Path, products: set[str]) -> int:
    """Each product once in the store, one observed row per parcel; returns the row count."""
    assert stored_products(store) == sorted(products)
    rows = ObservationStore(store).scan().filter(pl.col("source") == "observed").collect()
    per_product = Counter(rows.get_column("product_id").to_list())
    assert per_product == dict.fromkeys(products, N_PARCELS)
    assert rows.select("parcel_id", "product_id").is_duplicated().sum() == 0
    return rows.height


def start_worker(
    bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    name: str,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`parcel-monitor run` as a real process; its log goes to `tmp_path/NAME-*.log`."""
    config = tmp_path / "client.properties"
    config.write_text(FAST_SESSION)
    log = (tmp_path / f"{name}-{time.monotonic_ns()}.log").open("wb")
    command = [
        *CLI,
        "run",
        "--no-models",  # observation events only: their counts are what these tests check
        "--bootstrap",
        bootstrap,
        "--parcels",
        str(PARCELS),
        "--id-column",
        "segment_id",
        "--store",
        str(tmp_path / "store"),
        "--group",
        f"group-{topics.source}",
        "--worker-name",
        name,
        "--asset-root",
        str(sample_dir()),
        "--topic",
        topics.source,
        "--events-topic",
        topics.events,
        "--dlq-topic",
        topics.dlq,
        "--ledger-topic",
        topics.ledger,
        "--kafka-config",
        str(config),
        *extra,
    ]
    with log:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **(env or {})}
        )


def transaction_coordinator(bootstrap: str, transactional_id: str) -> int:
    """The node id of the transaction coordinator of `transactional_id`: the leader of its
    `__transaction_state` partition, Java's `abs(id.hashCode()) % partitions`."""
    code = 0
    for unit in transactional_id.encode("utf-16-be").hex(" ", 2).split():
        code = (31 * code + int(unit, 16)) & 0xFFFFFFFF
    signed = code - (1 << 32) if code >= 1 << 31 else code
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (topic,) = admin.describe_topics(["__transaction_state"])
    finally:
        admin.close()
    partitions = {p["partition_index"]: p["leader_id"] for p in topic["partitions"]}
    index = (0 if signed == -(1 << 31) else abs(signed)) % len(partitions)
    return int(partitions[index])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker exited with {proc.returncode}"
    return out.decode()
