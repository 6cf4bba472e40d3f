"""Send a catalog's acquisitions to the `acquisitions` topic, the message the workers consume.

Each STAC Item goes out with its relative asset hrefs made absolute (a Kafka message has no
folder), keyed by its MGRS tile so that a tile's acquisitions share a partition and keep their
order. The producer is idempotent with `acks=all`: a retried send is neither lost, duplicated
nor reordered within a partition.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.catalog import absolute_item
from monitor.errors import BrokerError
from monitor.stac import Acquisition

DEFAULT_TOPIC = "acquisitions"


@dataclass(frozen=True)
class PublishSummary:
    """What `publish_acquisitions` sent: messages per tile, to which topic, in how long."""

    topic: str
    per_tile: Mapping[str, int]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.per_tile.values())


def acquisition_message(path: Path, acq: Acquisition) -> tuple[bytes, bytes]:
    """The (key, value) of an acquisition message: the tile id, the item with absolute hrefs."""
    item = absolute_item(acq, path.parent)
    value = json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return acq.tile.encode("utf-8"), value.encode("utf-8")


def publish_acquisitions(
    entries: Sequence[tuple[Path, Acquisition]],
    bootstrap: str,
    topic: str = DEFAULT_TOPIC,
    *,
    timeout_s: float = 60.0,
) -> PublishSummary:
    """Produce `entries` (in the given order) to `topic` and wait until all are acknowledged.

    Raises `BrokerError` naming the first item Kafka did not take.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    start = time.perf_counter()
    timeout_ms = int(timeout_s * 1000)
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_block_ms=timeout_ms,
            delivery_timeout_ms=max(timeout_ms, 30_000),
        )
    except KafkaError as err:
        raise BrokerError(f"cannot connect to Kafka at {bootstrap}: {err}") from err
    try:
        sent: list[tuple[str, Any]] = []
        for path, acq in entries:
            key, value = acquisition_message(path, acq)
            try:
                sent.append((acq.product_id, producer.send(topic, key=key, value=value)))
            except KafkaError as err:
                raise BrokerError(_failed(acq.product_id, topic, bootstrap, err)) from err
        producer.flush(timeout=timeout_s)
        for product_id, future in sent:
            try:
                future.get(timeout=0)
            except KafkaError as err:
                raise BrokerError(_failed(product_id, topic, bootstrap, err)) from err
    finally:
        producer.close(timeout=timeout_s)
    per_tile = Counter(acq.tile for _, acq in entries)
    return PublishSummary(topic, dict(sorted(per_tile.items())), time.perf_counter() - start)


def _failed(product_id: str, topic: str, bootstrap: str, err: Exception) -> str:
    return f"item {product_id!r} not published to {topic!r} on {bootstrap}: {err}"
