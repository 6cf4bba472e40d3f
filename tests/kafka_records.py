"""Reading a topic back in tests: every record from the start, until the expected count."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer


def consume(
    bootstrap: str, topic: str, expected: int, *, timeout_s: float = 30, **config: Any
) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of `topic`'s records, read from the start until `expected` came
    or `timeout_s` passed, plus one short extra read so records beyond `expected` are noticed.
    `config` goes to the consumer (e.g. `isolation_level="read_committed"`)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
        **config,
    )
    records: list[tuple[int, bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend((m.partition, m.key, m.value) for m in consumer)
        records.extend((m.partition, m.key, m.value) for m in consumer)
    finally:
        consumer.close()
    return records
