"""Events in whole record batches: the Rust encoder read back by kafka-python's own decoder,
and a real broker returning exactly what was sent, committed or aborted."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import IllegalStateError, MessageSizeTooLargeError
from kafka.record.default_records import DefaultRecordBatch

from monitor import _core, event_sender
from monitor.broker import create_topics
from monitor.errors import KernelError
from monitor.event_sender import (
    FEW_RECORDS,
    kafka_internals_problem,
    key_partitions,
    send_events,
)

Records = list[tuple[bytes, bytes]]


def _records(n: int, seed: int = 0) -> Records:
    rng = random.Random(seed)
    return [
        (f"31UFS{i:07d}".encode(), f'{{"n":{i},"pad":"{"é" * rng.randrange(0, 200)}"}}'.encode())
        for i in range(n)
    ]


def _decode(data: bytes | bytearray) -> DefaultRecordBatch:
    batch = DefaultRecordBatch(bytes(data))
    assert batch.validate_crc()
    return batch


def test_encoded_batches_read_back_with_kafka_pythons_decoder() -> None:
    records = _records(3000)
    chosen = key_partitions([key for key, _ in records], 5)
    batches = _core.encode_record_batches(records, chosen, 5, 16_384, 1_750_000_000_123)
    by_partition: dict[int, Records] = defaultdict(list)
    for index, count, data in batches:
        assert len(data) <= 16_384
        batch = _decode(data)
        assert (batch.magic, batch.compression_type, batch.is_transactional) == (2, 0, False)
        assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (-1, -1, -1)
        assert batch.records_count == count
        decoded = list(batch)
        assert [r.offset for r in decoded] == list(range(count))
        assert {r.timestamp for r in decoded} == {1_750_000_000_123}
        assert all(r.headers == [] for r in decoded)
        by_partition[index].extend((r.key, r.value) for r in decoded)
    # Partitions in ascending order, several batches each, records in input order.
    assert [index for index, _, _ in batches] == sorted(index for index, _, _ in batches)
    assert len(batches) > 2 * 5
    for index in range(5):
        expected = [record for record, p in zip(records, chosen, strict=True) if p == index]
        assert by_partition[index] == expected


def test_a_record_over_the_batch_size_gets_a_batch_of_its_own() -> None:
    records = [(b"a", b"x" * 5000), (b"b", b"small"), (b"c", b"also small")]
    batches = _core.encode_record_batches(records, np.zeros(3, np.int64), 1, 1000, 0)
    assert [count for _, count, _ in batches] == [1, 2]
    assert [r.value for r in _decode(batches[0][2])] == [b"x" * 5000]


def test_sealing_sets_the_producer_and_a_valid_crc() -> None:
    ((_, _, data),) = _core.encode_record_batches(
        _records(10), np.zeros(10, np.int64), 1, 1 << 20, 5
    )
    sealed = _core.seal_record_batch(data, 4242, 7, 1000, True)
    batch = _decode(sealed)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (4242, 7, 1000)
    assert batch.is_transactional
    assert batch.last_sequence == 1009
    assert [(r.key, r.value) for r in batch] == _records(10)
    assert sealed[21:] != data[21:]
    assert sealed[:17] == data[:17]


def test_bad_encoder_input_is_a_kernel_error() -> None:
    with pytest.raises(KernelError, match=r"partition index 3 outside 0\.\.3"):
        _core.encode_record_batches([(b"k", b"v")], np.array([3]), 3, 1000, 0)
    with pytest.raises(KernelError, match="differ in length"):
        _core.encode_record_batches([(b"k", b"v")], np.array([0, 1]), 3, 1000, 0)
    with pytest.raises(KernelError, match="not a v2 record batch"):
        _core.seal_record_batch(b"\x00" * 20, 1, 0, 0, True)


def test_kafka_internals_are_there() -> None:
    assert kafka_internals_problem() is None


def test_a_producer_without_the_internals_is_named() -> None:
    problem = kafka_internals_problem(object())
    assert problem is not None
    assert "_accumulator, _sender" in problem
    assert "_accumulator._batches" in problem
    assert "\n" not in problem


def _read(bootstrap: str, topic: str, expected: int, isolation: str) -> list[Any]:
    """Every message of `topic` from the start (per partition in offset order)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
        consumer_timeout_ms=1500,
    )
    messages: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages.extend(consumer)
        messages.extend(consumer)
    finally:
        consumer.close()
    return messages


def _transactional(bootstrap: str, **config: Any) -> Any:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"sender-{uuid.uuid4().hex[:8]}",
        acks="all",
        **config,
    )
    producer.init_transactions()
    return producer


@pytest.mark.kafka
def test_a_committed_transaction_reads_back_exactly(kafka_bootstrap: str) -> None:
    topic = f"sender-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 6})
    many = _records(6000)
    # One partition gets only a few records: those go through `send`, the rest in batches.
    thin = key_partitions([key for key, _ in many], 6) == 5
    records = [r for r, skip in zip(many, thin & (np.cumsum(thin) > 5), strict=True) if not skip]
    assert FEW_RECORDS > 5
    # Small batches: each other partition's records span several record batches.
    producer = _transactional(kafka_bootstrap, batch_size=16_384)
    assert kafka_internals_problem(producer) is None
    started_ms = time.time() * 1000
    try:
        producer.begin_transaction()
        producer.send(topic, key=records[0][0], value=b"before")  # a plain send, same partition
        send_events(producer, topic, records)
        producer.send(topic, key=records[0][0], value=b"after")
        producer.commit_transaction()
    finally:
        producer.close()
    got = _read(kafka_bootstrap, topic, len(records) + 2, "read_committed")
    assert len(got) == len(records) + 2
    chosen = key_partitions([key for key, _ in records], 6).tolist()
    expected: dict[int, Records] = defaultdict(list)
    expected[chosen[0]].append((records[0][0], b"before"))
    for record, partition in zip(records, chosen, strict=True):
        expected[partition].append(record)
    expected[chosen[0]].append((records[0][0], b"after"))
    landed: dict[int, Records] = defaultdict(list)
    for message in sorted(got, key=lambda m: (m.partition, m.offset)):
        landed[message.partition].append((message.key, message.value))
        assert message.headers == []
        assert started_ms - 1000 <= message.timestamp <= time.time() * 1000
    assert landed == expected
    assert len(landed[5]) == 5


@pytest.mark.kafka
def test_an_aborted_transaction_is_invisible_to_read_committed(kafka_bootstrap: str) -> None:
    topic = f"sender-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 3})
    aborted, committed = _records(2000, seed=1), [(b"k1", b"kept"), (b"k2", b"kept too")]
    producer = _transactional(kafka_bootstrap, batch_size=16_384)
    try:
        producer.begin_transaction()
        send_events(producer, topic, aborted)
        producer.flush(timeout=30)  # the batches reach the log before the abort
        producer.abort_transaction()
        producer.begin_transaction()
        send_events(producer, topic, committed)
        producer.commit_transaction()
    finally:
        producer.close()
    visible = _read(kafka_bootstrap, topic, len(committed), "read_committed")
    assert sorted((m.key, m.value) for m in visible) == sorted(committed)
    everything = _read(kafka_bootstrap, topic, len(aborted) + 2, "read_uncommitted")
    assert len(everything) == len(aborted) + len(committed)


@pytest.mark.kafka
def test_send_events_refuses_what_send_refuses(kafka_bootstrap: str) -> None:
    topic = f"sender-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 2})
    producer = _transactional(kafka_bootstrap, max_request_size=4000)
    try:
        with pytest.raises(IllegalStateError, match="Cannot call send in state READY"):
            send_events(producer, topic, _records(5))
        producer.begin_transaction()
        too_large = [*_records(5), (b"big", b"x" * 4000)]
        with pytest.raises(MessageSizeTooLargeError, match="4089 bytes"):
            send_events(producer, topic, too_large)
        with pytest.raises(MessageSizeTooLargeError, match="4089 bytes"):
            producer.send(topic, key=b"big", value=b"x" * 4000)
        producer.abort_transaction()
    finally:
        producer.close()
    with pytest.raises(IllegalStateError, match="closed"):
        send_events(producer, topic, _records(5))


@pytest.mark.kafka
def test_with_compression_records_go_one_by_one_to_the_same_partitions(
    kafka_bootstrap: str,
) -> None:
    topic = f"sender-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 4})
    records = _records(500)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, compression_type="gzip")
    try:
        send_events(producer, topic, records)
        producer.flush(timeout=30)
    finally:
        producer.close()
    got = _read(kafka_bootstrap, topic, len(records), "read_uncommitted")
    chosen = dict(
        zip(
            (k for k, _ in records),
            key_partitions([k for k, _ in records], 4).tolist(),
            strict=True,
        )
    )
    assert sorted((m.key, m.value) for m in got) == sorted(records)
    assert all(m.partition == chosen[m.key] for m in got)


@pytest.mark.kafka
def test_without_the_internals_every_record_still_lands_once(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A kafka-python release lacking the batch path's private parts costs speed, not events."""
    monkeypatch.setattr(event_sender, "_MODULE_PROBLEM", "kafka-python 9 lacks X")
    topic = f"sender-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 3})
    records = _records(300, seed=2)
    producer = _transactional(kafka_bootstrap)
    try:
        producer.begin_transaction()
        send_events(producer, topic, records[:150])
        send_events(producer, topic, records[150:])
        producer.commit_transaction()
    finally:
        producer.close()
    got = _read(kafka_bootstrap, topic, len(records), "read_committed")
    assert sorted((m.key, m.value) for m in got) == sorted(records)
    chosen = dict(
        zip(
            (k for k, _ in records),
            key_partitions([k for k, _ in records], 3).tolist(),
            strict=True,
        )
    )
    assert all(m.partition == chosen[m.key] for m in got)
    warnings = [r for r in caplog.records if "one by one" in r.getMessage()]
    assert len(warnings) == 1
    assert "kafka-python 9 lacks X" in warnings[0].getMessage()
