"""Parcel events to Kafka in whole record batches, through kafka-python's own producer.

kafka-python's `producer.send` costs about 24 µs of Python per record (argument checks,
partitioner, accumulator append, varint encoding), which caps a full tile's events near
35 000/s. `send_events` hashes every key at once (`key_partitions`), encodes each partition's
records into complete v2 record batches in Rust (`monitor._core.encode_record_batches`), and
hands the batches to the producer's accumulator the way `send` hands its own:

* each partition joins the transaction first (`maybe_add_partition_to_transaction`, which
  also raises when the producer is fenced or in error, as `send` does);
* each batch is a kafka-python `ProducerBatch` around a `MemoryRecordsBuilder` whose record
  builder is an `_EncodedBatch`: the sender drains it like any other, filling in the producer
  id, epoch, base sequence and transactional flag (`set_producer_state`), and the CRC is
  recomputed then (`_core.seal_record_batch`). Sequence numbers, retries, AddPartitionsToTxn,
  offsets in the transaction and commit or abort all stay kafka-python's.

So records land where `send(topic, key=key, value=value)` puts them, in the same order within
a partition, with the same bytes (no headers, one create timestamp per call). A partition that
gets fewer than `FEW_RECORDS` records in a call, or every partition when compression is
configured (kafka-python compresses when it closes a batch, which an encoded batch skips),
has its records go through `send` one by one instead.

This relies on private parts of kafka-python 3 (pinned `>=3.0.12,<4`). `kafka_internals_problem`
names what a kafka-python release lacks of them; `send_events` checks the module once and each
producer, and where something is missing it logs one warning and sends every record through
`send`: a kafka-python upgrade can cost speed (about 10 000 events/s instead of 100 000+), never
events.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

import kafka
import numpy as np
import numpy.typing as npt
from kafka.errors import IllegalStateError, MessageSizeTooLargeError
from kafka.producer.producer_batch import ProducerBatch
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.producer.transaction_manager import TransactionManager
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from monitor import _core

__all__ = ["kafka_internals_problem", "key_partitions", "send_events"]

LOG = logging.getLogger(__name__)

#: Record batch format v2 ("magic 2"), the only one encoded here.
_MAGIC = 2
#: Bytes of a v2 batch header, and the most a record adds besides its key and value when it
#: is alone in a batch (kafka-python's `estimate_size_in_bytes`, checked against max_request_size).
_BATCH_HEADER = DefaultRecordBatchBuilder.HEADER_STRUCT.size
_RECORD_OVERHEAD = DefaultRecordBatchBuilder.MAX_RECORD_OVERHEAD
#: A partition getting fewer records in one call has them sent one by one: `send` packs them
#: into the partition's open batch, where a batch of their own would cost the producer's sender
#: more (per batch) than it saves (per record), as when a transaction holds many small
#: acquisitions.
FEW_RECORDS = 32
_PRODUCER_ATTRIBUTES = ("_accumulator", "_sender", "_transaction_manager", "_closed", "config")
_ACCUMULATOR_ATTRIBUTES = ("_batches", "_incomplete", "_appends_in_progress", "_closed", "config")


def key_partitions(keys: Sequence[bytes], n_partitions: int) -> npt.NDArray[np.int64]:
    """The partition index Kafka's default partitioner (Java's and kafka-python's) gives each
    key: murmur2 of the key bytes, sign bit cleared, modulo the partition count.

    Hashed in Rust for all keys at once: kafka-python hashes each key in pure Python inside
    `send`, about a quarter of its CPU time per message.
    """
    return _core.key_partitions(list(keys), n_partitions)


def kafka_internals_problem(producer: Any = None) -> str | None:
    """What the batch path misses in this kafka-python (and in `producer`, when given), as one
    line; None when everything `send_events` relies on is there."""
    problems = [
        name
        for name in ("_builder", "_next_offset", "_batch_size")
        if name not in getattr(MemoryRecordsBuilder, "__slots__", ())
    ]
    parameters = list(inspect.signature(ProducerBatch.__init__).parameters)
    if parameters[:3] != ["self", "tp", "records"]:
        problems.append("ProducerBatch(tp, records)")
    for owner, names in (
        (RecordAccumulator, ("_tp_lock",)),
        (TransactionManager, ("maybe_add_partition_to_transaction", "is_transactional")),
    ):
        problems += [f"{owner.__name__}.{name}" for name in names if not hasattr(owner, name)]
    if producer is not None:
        problems += [name for name in _PRODUCER_ATTRIBUTES if not hasattr(producer, name)]
        accumulator = getattr(producer, "_accumulator", None)
        problems += [
            f"_accumulator.{name}"
            for name in _ACCUMULATOR_ATTRIBUTES
            if not hasattr(accumulator, name)
        ]
    if not problems:
        return None
    return (
        f"kafka-python {kafka.__version__} lacks what monitor.event_sender's batch path relies on "
        f"({', '.join(problems)}; it was written for kafka-python >=3.0.12,<4)"
    )


#: Checked once per process: the module's classes do not change while it runs.
_MODULE_PROBLEM = kafka_internals_problem()
_warned: set[str] = set()


def _warn_once(problem: str) -> None:
    if problem not in _warned:
        _warned.add(problem)
        LOG.warning("%s: sending events one by one through KafkaProducer.send", problem)


class _EncodedBatch:
    """Stands in for kafka-python's `DefaultRecordBatchBuilder` inside a `MemoryRecordsBuilder`:
    the records are encoded already; the producer fields arrive when the batch is drained."""

    __slots__ = ("_data", "base_sequence", "is_transactional", "producer_epoch", "producer_id")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.producer_id, self.producer_epoch, self.base_sequence = -1, -1, -1
        self.is_transactional = False

    def append(self, *_: object) -> None:
        """Full: a later `send` to the partition opens a batch of its own after this one."""
        return None

    def set_producer_state(
        self, producer_id: int, producer_epoch: int, base_sequence: int, is_transactional: bool
    ) -> None:
        self.producer_id, self.producer_epoch = producer_id, producer_epoch
        self.base_sequence, self.is_transactional = base_sequence, is_transactional

    def build(self) -> bytearray:
        return _core.seal_record_batch(
            self._data,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.is_transactional,
        )

    def size(self) -> int:
        return len(self._data)


def send_events(producer: Any, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Send (key, value) records to `topic`, each to the partition of its key, in whole batches.

    Records land where `producer.send(topic, key=key, value=value)` puts them, in order within
    a partition, inside the producer's current transaction when it is transactional. Raises
    what `send` raises for a closed, fenced or failed producer, or a record over
    max_request_size.
    """
    if not records:
        return
    problem = _MODULE_PROBLEM or kafka_internals_problem(producer)
    if problem is not None:
        _warn_once(problem)
        for key, value in records:
            producer.send(topic, key=key, value=value)
        return
    accumulator = producer._accumulator
    if producer._closed:
        raise IllegalStateError("KafkaProducer already closed!")
    _check_record_sizes(records, producer.config["max_request_size"])
    partitions = sorted(producer.partitions_for(topic))
    chosen = _core.key_partitions([key for key, _ in records], len(partitions))
    if accumulator.config["compression_attrs"] or accumulator.config["message_version"] != _MAGIC:
        one_by_one = np.ones(len(records), dtype=bool)
    else:
        counts = np.bincount(chosen, minlength=len(partitions))
        one_by_one = (counts < FEW_RECORDS)[chosen]
    if one_by_one.any():
        for row in np.flatnonzero(one_by_one).tolist():
            key, value = records[row]
            producer.send(topic, key=key, value=value, partition=partitions[chosen[row]])
        if one_by_one.all():
            return
        rows = np.flatnonzero(~one_by_one)
        records, chosen = [records[row] for row in rows.tolist()], chosen[rows]
    max_bytes = min(producer.config["batch_size"], producer.config["max_request_size"])
    batches = _core.encode_record_batches(
        list(records), chosen, len(partitions), max_bytes, int(time.time() * 1000)
    )
    manager = producer._transaction_manager
    if manager is not None and manager.is_transactional():
        for index in sorted({index for index, _, _ in batches}):
            manager.maybe_add_partition_to_transaction(TopicPartition(topic, partitions[index]))
    for index, count, data in batches:
        builder = MemoryRecordsBuilder(_MAGIC, 0, max_bytes)
        builder._builder = _EncodedBatch(data)
        builder._next_offset = count
        _enqueue(accumulator, ProducerBatch(TopicPartition(topic, partitions[index]), builder))
    producer._sender.wakeup()


def _check_record_sizes(records: Sequence[tuple[bytes, bytes]], max_request_size: int) -> None:
    """`MessageSizeTooLargeError`, as `send` raises, for a record over max_request_size."""
    sizes = np.fromiter((len(k) + len(v) for k, v in records), dtype=np.int64, count=len(records))
    # Upper bound of kafka-python's estimate (two length varints of at most 5 bytes each):
    # only a record near the limit needs the exact estimate.
    if int(sizes.max()) + _BATCH_HEADER + _RECORD_OVERHEAD + 11 <= max_request_size:
        return
    for key, value in records:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
        if size > max_request_size:
            raise MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized which is larger than the maximum "
                "request size you have configured with the max_request_size configuration"
            )


def _enqueue(accumulator: Any, batch: ProducerBatch) -> None:
    """Append `batch` to its partition's queue as `RecordAccumulator.append` does a new one,
    under the same lock: kafka-python's sender thread drains the queues meanwhile."""
    accumulator._appends_in_progress.increment()
    try:
        with accumulator._tp_lock(batch.topic_partition):
            if accumulator._closed:
                raise IllegalStateError("RecordAccumulator is closed")
            accumulator._batches[batch.topic_partition].append(batch)
            accumulator._incomplete.add(batch)
    finally:
        accumulator._appends_in_progress.decrement()
