"""The worker's bulk event send: the same partitions as Kafka's default partitioner."""

from __future__ import annotations

import random
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

from monitor.broker import create_topics
from monitor.worker import key_partitions, send_events


def _reference(keys: list[bytes], n: int) -> list[int]:
    """kafka-python's DefaultPartitioner (a port of Java's) for keyed records."""
    return [(murmur2(key) & 0x7FFFFFFF) % n for key in keys]


@pytest.mark.parametrize("n_partitions", [1, 6, 7, 100])
def test_key_partitions_match_the_default_partitioner(n_partitions: int) -> None:
    rng = random.Random(n_partitions)
    keys = [rng.randbytes(rng.randrange(0, 41)) for _ in range(3000)]
    keys += [str(i).encode() for i in range(1000)]
    keys += [b"", b"a", b"ab", b"abc", b"abcd", "parcelle-é-ü".encode(), b"\xff" * 9]
    assert key_partitions(keys, n_partitions).tolist() == _reference(keys, n_partitions)


def test_key_partitions_of_no_keys() -> None:
    assert key_partitions([], 6).tolist() == []


@pytest.mark.kafka
def test_send_events_lands_where_a_plain_send_does(kafka_bootstrap: str) -> None:
    plain_topic, bulk_topic = (f"parts-{uuid.uuid4().hex[:8]}" for _ in range(2))
    create_topics(kafka_bootstrap, {plain_topic: 6, bulk_topic: 6})
    records = [(f"FR-{i:07d}".encode(), f'{{"n":{i}}}'.encode()) for i in range(300)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(plain_topic, key=key, value=value)
        send_events(producer, bulk_topic, records)
        producer.flush()
    finally:
        producer.close()
    landed: dict[str, dict[bytes, tuple[int, bytes]]] = {}
    for topic in (plain_topic, bulk_topic):
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
        )
        got = landed.setdefault(topic, {})
        try:
            for message in consumer:
                got[message.key] = (message.partition, message.value)
                if len(got) == len(records):
                    break
        finally:
            consumer.close()
    assert len(landed[bulk_topic]) == len(records)
    assert landed[bulk_topic] == landed[plain_topic]
    assert len({partition for partition, _ in landed[bulk_topic].values()}) == 6
